package mount

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// twoLayerOverlay builds a read-only overlay whose file "marker" holds tag.
func twoLayerOverlay(t *testing.T, base, tag string) *os.File {
	t.Helper()
	top := mkdir(t, filepath.Join(base, tag+"-top"))
	bottom := mkdir(t, filepath.Join(base, tag+"-bottom"))
	writeFile(t, filepath.Join(top, "marker"), tag)
	mnt, err := MountOverlay(OverlaySpec{Source: "test-" + tag, Lower: []Layer{{Path: top}, {Path: bottom}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mnt.Close() })
	return mnt
}

// watch reads path/marker in a loop until stop is closed and reports how
// many reads failed and which contents were seen.
type watch struct {
	reads, fails atomic.Int64
	mu           sync.Mutex
	seen         map[string]bool
	stop         chan struct{}
	done         chan struct{}
}

func startWatch(path string) *watch {
	w := &watch{seen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(path, "marker"))
			w.reads.Add(1)
			if err != nil {
				w.fails.Add(1)
				continue
			}
			w.mu.Lock()
			w.seen[string(b)] = true
			w.mu.Unlock()
		}
	}()
	return w
}

// settle lets the watcher run for at least n more reads.
func (w *watch) settle(n int64) {
	end := w.reads.Load() + n
	for w.reads.Load() < end {
		time.Sleep(time.Millisecond)
	}
}

func (w *watch) finish() {
	close(w.stop)
	<-w.done
}

func TestBeneathSupported(t *testing.T) {
	testutil.RequireRoot(t)
	if !BeneathSupported() {
		t.Fatal("BeneathSupported() = false on a kernel >= 6.5")
	}
}

// TestReplaceBeneathNoGap replaces a live overlay by mounting the new one
// beneath it and detaching the old one, while a reader loops on a file in
// it; the control case (unmount, pause, mount) shows the reader does detect
// a gap, so the main case is not vacuous.
func TestReplaceBeneathNoGap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		beneath bool
	}{{"beneath", true}, {"control-unmount-then-mount", false}} {
		t.Run(tc.name, func(t *testing.T) {
			base := testutil.Tmpfs(t)
			target := mkdir(t, filepath.Join(base, "etc"))
			writeFile(t, filepath.Join(base, "etc", "underlying"), "")
			attachAt(t, twoLayerOverlay(t, base, "A"), target)
			b := twoLayerOverlay(t, base, "B")
			w := startWatch(target)
			w.settle(200)
			top := openPath(t, target) // root of A, the mount on top
			if tc.beneath {
				if err := Attach(b, top, true); err != nil {
					w.finish()
					t.Fatal(err)
				}
				w.settle(200)
				if err := UnmountFd(top, unix.MNT_DETACH); err != nil {
					w.finish()
					t.Fatal(err)
				}
			} else {
				if err := UnmountFd(top, unix.MNT_DETACH); err != nil {
					w.finish()
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
				if err := Attach(b, openPath(t, target), false); err != nil {
					w.finish()
					t.Fatal(err)
				}
			}
			w.settle(200)
			w.finish()
			if got := readFile(t, filepath.Join(target, "marker")); got != "B" {
				t.Fatalf("after replacement marker = %q, want B", got)
			}
			t.Logf("%d reads, %d failed, seen %v", w.reads.Load(), w.fails.Load(), w.seen)
			if tc.beneath && w.fails.Load() != 0 {
				t.Errorf("%d of %d reads failed during the beneath replacement", w.fails.Load(), w.reads.Load())
			}
			if !tc.beneath && w.fails.Load() == 0 {
				t.Errorf("control: the watcher saw no gap, so it cannot prove the beneath case")
			}
			if !w.seen["A"] || !w.seen["B"] {
				t.Errorf("watcher saw %v, want A and B", w.seen)
			}
		})
	}
}

func TestAttachBeneathNotOnTopIsEINVAL(t *testing.T) {
	base := testutil.Tmpfs(t)
	plain := mkdir(t, filepath.Join(base, "plain"))
	err := Attach(twoLayerOverlay(t, base, "X"), openPath(t, plain), true)
	if !errors.Is(err, unix.EINVAL) {
		t.Fatalf("beneath onto a non-mount-root: %v, want EINVAL", err)
	}
	if errors.Is(err, ErrBeneathUnsupported) {
		t.Fatalf("kernel supports beneath, but error says unsupported: %v", err)
	}
}

func TestBindDetachedSetAttrReadOnly(t *testing.T) {
	base := testutil.Tmpfs(t)
	src := mkdir(t, filepath.Join(base, "src"))
	sub := mkdir(t, filepath.Join(src, "sub"))
	if err := Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer Unmount(sub, unix.MNT_DETACH)
	writeFile(t, filepath.Join(sub, "f"), "in submount")
	dir, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	bind, err := BindDetached(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer bind.Close()
	if err := SetAttr(bind, unix.MOUNT_ATTR_RDONLY, 0, unix.MS_PRIVATE, true); err != nil {
		t.Fatal(err)
	}
	dst := mkdir(t, filepath.Join(base, "dst"))
	attachAt(t, bind, dst)
	if got := readFile(t, filepath.Join(dst, "sub", "f")); got != "in submount" {
		t.Errorf("recursive bind lacks the submount: %q", got)
	}
	err = os.WriteFile(filepath.Join(dst, "sub", "g"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write into read-only bind: %v, want EROFS", err)
	}
	writeFile(t, filepath.Join(src, "still-writable"), "")
}

// optional returns the optional fields of the mount at mp.
func optional(t *testing.T, mp string) string {
	t.Helper()
	infos, err := ReadMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(infos) - 1; i >= 0; i-- {
		if infos[i].Mountpoint == mp {
			return infos[i].Optional
		}
	}
	t.Fatalf("%s not in mountinfo", mp)
	return ""
}

func TestPropagation(t *testing.T) {
	base := testutil.Tmpfs(t)
	if err := MakeShared(base, false); err != nil {
		t.Fatal(err)
	}
	if o := optional(t, base); !strings.Contains(o, "shared:") {
		t.Fatalf("after MakeShared optional = %q", o)
	}
	peer := mkdir(t, filepath.Join(t.TempDir(), "peer"))
	if err := Mount(base, peer, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer Unmount(peer, unix.MNT_DETACH)
	if err := MakeSlave(peer, false); err != nil {
		t.Fatal(err)
	}
	if o := optional(t, peer); !strings.Contains(o, "master:") || strings.Contains(o, "shared:") {
		t.Fatalf("after MakeSlave optional = %q", o)
	}
	if err := MakePrivate(base, true); err != nil {
		t.Fatal(err)
	}
	if o := optional(t, base); o != "" {
		t.Fatalf("after MakePrivate optional = %q", o)
	}
}

func TestUnmountErrors(t *testing.T) {
	base := testutil.Tmpfs(t)
	mp := mkdir(t, filepath.Join(base, "busy"))
	if err := Mount("tmpfs", mp, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer Unmount(mp, unix.MNT_DETACH)
	f, err := os.Create(filepath.Join(mp, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = Unmount(mp, 0)
	var me *Error
	if !errors.Is(err, unix.EBUSY) || !errors.As(err, &me) || me.Target != mp || me.Op != "umount2" {
		t.Errorf("unmount busy: %#v, want *Error EBUSY for %s", err, mp)
	}
	if err := Unmount(filepath.Join(base, "missing"), 0); !errors.Is(err, unix.ENOENT) {
		t.Errorf("unmount missing: %v, want ENOENT", err)
	}
	if err := Unmount(mkdir(t, filepath.Join(base, "plain")), 0); !errors.Is(err, unix.EINVAL) {
		t.Errorf("unmount non-mount: %v, want EINVAL", err)
	}
	if _, err := NewFS("no-such-fs", ""); !errors.Is(err, unix.ENODEV) {
		t.Errorf("NewFS(no-such-fs): %v, want ENODEV", err)
	}
}

package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// openPath opens p as an O_PATH fd, as rootfs would hand out mount targets.
func openPath(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mkdir(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// attachAt attaches mnt at dir and unmounts it at cleanup.
func attachAt(t *testing.T, mnt *os.File, dir string) {
	t.Helper()
	if err := Attach(mnt, openPath(t, dir), false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unmount(dir, unix.MNT_DETACH) })
}

// oddName makes layer names that a mount(2) option string could not carry
// without escaping.
func oddName(i int) string {
	return fmt.Sprintf("layer %03d,with:colon=eq\\back", i)
}

func TestOverlay128LayersOddNames(t *testing.T) {
	for _, mode := range []struct {
		name  string
		byFd  bool
		feat  *Features
		flags int
	}{{"paths", false, nil, 0}, {"fds", true, nil, os.O_RDONLY}, {"opath-fds", true, nil, unix.O_PATH},
		{"proc-fd-6.12", true, Expected([2]int{6, 12}), os.O_RDONLY},
		{"proc-fd-6.13", true, Expected([2]int{6, 13}), unix.O_PATH}} {
		t.Run(mode.name, func(t *testing.T) {
			base := testutil.Tmpfs(t)
			const n = 128
			var lower []Layer
			for i := 0; i < n; i++ {
				d := mkdir(t, filepath.Join(base, oddName(i)))
				writeFile(t, filepath.Join(d, fmt.Sprintf("f%03d", i)), "x")
				writeFile(t, filepath.Join(d, "shadow"), fmt.Sprint(i))
				if mode.byFd {
					f, err := os.OpenFile(d, mode.flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					lower = append(lower, Layer{File: f})
				} else {
					lower = append(lower, Layer{Path: d})
				}
			}
			// Total length of the names alone exceeds a page: mount(2)
			// could not take this as one option string.
			if total := n * len(filepath.Join(base, oddName(0))); total <= 4096 {
				t.Fatalf("layer paths only %d bytes, test would not exceed a page", total)
			}
			mnt, err := MountOverlay(OverlaySpec{Source: "odd,source", Lower: lower, Attrs: unix.MOUNT_ATTR_NODEV, Features: mode.feat})
			if err != nil {
				t.Fatal(err)
			}
			defer mnt.Close()
			target := mkdir(t, filepath.Join(base, "merged"))
			attachAt(t, mnt, target)
			if got := readFile(t, filepath.Join(target, "shadow")); got != "0" {
				t.Errorf("shadow = %q, want top layer 0", got)
			}
			ents, err := os.ReadDir(target)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != n+1 {
				t.Errorf("merged has %d entries, want %d", len(ents), n+1)
			}
			infos, err := ReadMountinfo()
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range infos {
				if in.Mountpoint == target {
					if in.FSType != "overlay" || in.Source != "odd,source" || !strings.Contains(in.Options, "nodev") {
						t.Errorf("mountinfo entry %+v", in)
					}
					return
				}
			}
			raw, _ := os.ReadFile("/proc/self/mountinfo")
			t.Errorf("overlay not in mountinfo at %s (%d entries)\n%.3000s", target, len(infos), raw)
		})
	}
}

func TestOverlayUpperWorkFds(t *testing.T) {
	base := testutil.Tmpfs(t)
	low := mkdir(t, filepath.Join(base, "low"))
	writeFile(t, filepath.Join(low, "a"), "lower")
	up := mkdir(t, filepath.Join(base, "up, per"))
	work := mkdir(t, filepath.Join(base, "wo:rk"))
	lf, _ := os.Open(low)
	uf, _ := os.Open(up)
	wf, _ := os.Open(work)
	defer lf.Close()
	defer uf.Close()
	defer wf.Close()
	mnt, err := MountOverlay(OverlaySpec{Lower: []Layer{{File: lf}}, Upper: &Layer{File: uf}, Work: &Layer{File: wf},
		Options: []string{"redirect_dir=on", "metacopy=off"}})
	if err != nil {
		t.Fatal(err)
	}
	defer mnt.Close()
	target := mkdir(t, filepath.Join(base, "merged"))
	attachAt(t, mnt, target)
	writeFile(t, filepath.Join(target, "a"), "changed")
	if got := readFile(t, filepath.Join(up, "a")); got != "changed" {
		t.Errorf("upper/a = %q", got)
	}
	if got := readFile(t, filepath.Join(low, "a")); got != "lower" {
		t.Errorf("lower/a changed to %q", got)
	}
}

func TestOverlayErrorsCarryKernelMessages(t *testing.T) {
	base := testutil.Tmpfs(t)
	_, err := MountOverlay(OverlaySpec{Lower: []Layer{{Path: filepath.Join(base, "missing")}}})
	var me *Error
	if !errors.Is(err, unix.ENOENT) || !errors.As(err, &me) || me.FSType != "overlay" || !strings.Contains(me.Data, "missing") {
		t.Fatalf("missing lower: %#v, want *Error with ENOENT naming the layer", err)
	}
	_, err = MountOverlay(OverlaySpec{Lower: []Layer{{Path: base}}, Options: []string{"no_such_option"}})
	if !errors.Is(err, unix.EINVAL) {
		t.Fatalf("bad option: %v, want EINVAL", err)
	}
	// The overlay driver logs unknown parameters into the fs context, not
	// (only) the kernel log: the error must carry that line.
	if !strings.Contains(err.Error(), "e overlay: Unknown parameter 'no_such_option'") {
		t.Errorf("error lacks the kernel's message: %v", err)
	}
	if _, err := MountOverlay(OverlaySpec{}); err == nil {
		t.Fatal("overlay without layers succeeded")
	}
}

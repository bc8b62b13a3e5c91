package extension

// Regression tests of issue 8 (hostile images, concurrent runs), root tier:
// items 1 (concurrent refreshes), 2 (work_dir from an image), 4 (work dirs
// leaked by a failed attach) and 6 (a merge over several hierarchies is
// all-or-nothing).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// overlaysAt counts the overlay mounts whose mount point is exactly dir.
func overlaysAt(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	must(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		sep := 0
		for i, x := range fs {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fs) > 4 && sep > 0 && sep+1 < len(fs) && fs[4] == dir && fs[sep+1] == "overlay" {
			n++
		}
	}
	return n
}

// workDirsIn lists the entries of dir named like a work dir of /etc.
func workDirsIn(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".systemd-etc-workdir") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestConcurrentRefreshes (issue 8 item 1): two `--always-refresh=yes
// refresh` of the binary at once, 60 rounds. Before the hierarchy lock
// most calls failed (move_mount BENEATH ENOENT, umount2 EINVAL), two
// overlays ended stacked on /etc sharing one work dir and work dirs leaked.
// Now every call succeeds, /etc carries exactly one overlay after every
// round and exactly one work dir exists: the one work_dir names.
func TestConcurrentRefreshes(t *testing.T) {
	r := testRoot(t, "symlink")
	bin := testutil.BuildBinary(t)
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	rawImage(t, r, "squashfs", "sq1")
	env := append(os.Environ(), "EXT_SETUP_ROOT_STATE_DIR="+t.TempDir())
	call := func(verb string, extra ...string) (string, error) {
		args := append([]string{"confext", "--root=" + r, "--mutable=yes"}, extra...)
		cmd := exec.Command(bin, append(args, verb)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := call("merge"); err != nil {
		t.Fatalf("merge: %v\n%s", err, out)
	}
	defer call("unmerge")
	etc := filepath.Join(r, "etc")
	failures := 0
	for round := 0; round < 60; round++ {
		var wg sync.WaitGroup
		outs := make([]string, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outs[i], errs[i] = call("refresh", "--always-refresh=yes")
			}()
		}
		wg.Wait()
		for i := range 2 {
			if errs[i] != nil {
				failures++
				t.Errorf("round %d call %d: %v\n%s", round, i, errs[i], outs[i])
			}
		}
		if n := overlaysAt(t, etc); n != 1 {
			t.Fatalf("round %d: %d overlays on %s, want 1", round, n, etc)
		}
		wd, ok := readMeta(t, r, "work_dir")
		if !ok {
			t.Fatalf("round %d: no work_dir", round)
		}
		if got := workDirsIn(t, r); len(got) != 1 || got[0]+"\n" != wd {
			t.Fatalf("round %d: work dirs %v, work_dir %q: want exactly the one in use", round, got, wd)
		}
		if _, err := os.Stat(filepath.Join(etc, "dir1.conf")); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if failures > 0 {
		t.Fatalf("%d of 120 concurrent refreshes failed", failures)
	}
	if out, err := call("unmerge"); err != nil {
		t.Fatalf("unmerge: %v\n%s", err, out)
	}
	if n := overlaysAt(t, etc); n != 0 {
		t.Fatalf("%d overlays left on %s after unmerge", n, etc)
	}
	if got := workDirsIn(t, r); len(got) != 0 {
		t.Fatalf("work dirs left after unmerge: %v", got)
	}
}

// TestWaitedRefreshSkips: a refresh that waited for the lock while the
// holder replaced the merge skips when that merge is what it would make,
// even with AlwaysRefresh (the refresh it asked for has just happened); one
// that waited while nothing changed refreshes as asked.
func TestWaitedRefreshSkips(t *testing.T) {
	for _, replace := range []bool{true, false} {
		t.Run(fmt.Sprintf("holder-replaces=%v", replace), func(t *testing.T) {
			r := testRoot(t, "symlink")
			dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
			ctx := context.Background()
			_, err := Merge(ctx, opts(r, "yes"))
			must(t, err)
			defer Unmerge(ctx, opts(r, "yes"))
			holder, err := newEngine(opts(r, "yes"))
			must(t, err)
			defer holder.close()
			l, err := holder.lockHierarchies(ctx)
			must(t, err)
			type out struct {
				res *Result
				err error
			}
			done := make(chan out, 1)
			o := opts(r, "yes")
			o.AlwaysRefresh = true
			go func() {
				res, err := Refresh(ctx, o)
				done <- out{res, err}
			}()
			select {
			case x := <-done:
				t.Fatalf("the refresh did not wait for the lock: %+v %v", x.res, x.err)
			case <-time.After(300 * time.Millisecond):
			}
			if replace {
				res, err := holder.runLocked(ctx, true, true)
				must(t, err)
				if res.Unchanged {
					t.Fatal("holder's forced refresh skipped")
				}
			}
			l.release()
			x := <-done
			must(t, x.err)
			if x.res.Unchanged != replace {
				t.Fatalf("waiting refresh: unchanged=%v, want %v", x.res.Unchanged, replace)
			}
		})
	}
}

// TestImageWorkDirIgnored (issue 8 item 2): a confext shipping
// etc/.systemd-confext/work_dir = "victim", merged non-mutable, made
// unmerge remove R/victim. The meta layer's .systemd-confext is now opaque
// (the image's file is not visible) and a work_dir naming anything but a
// work dir is never used for a removal. The same holds for a work_dir in
// a mutable merge's upper dir (/etc itself), which sits above the meta
// layer.
func TestImageWorkDirIgnored(t *testing.T) {
	ctx := context.Background()
	victim := func(t *testing.T, r string) string {
		v := filepath.Join(r, "victim")
		write(t, filepath.Join(v, "data"), "precious\n")
		return v
	}
	t.Run("image", func(t *testing.T) {
		r := testRoot(t, "none")
		v := victim(t, r)
		d := dirImage(t, r, "evil", "ID=testos\nVERSION_ID=1.0\n")
		write(t, filepath.Join(d, "etc/.systemd-confext/work_dir"), "victim\n")
		write(t, filepath.Join(d, "etc/.systemd-confext/extra"), "x\n")
		_, err := Merge(ctx, opts(r, "no"))
		must(t, err)
		if _, ok := readMeta(t, r, "work_dir"); ok {
			t.Error("the image's .systemd-confext/work_dir shows through the meta layer")
		}
		if _, ok := readMeta(t, r, "extra"); ok {
			t.Error("the image's .systemd-confext/extra shows through the meta layer")
		}
		_, err = Unmerge(ctx, opts(r, "no"))
		must(t, err)
		if b, err := os.ReadFile(filepath.Join(v, "data")); err != nil || string(b) != "precious\n" {
			t.Fatalf("unmerge removed %s: %v", v, err)
		}
	})
	// In the upper dir: a plain name, and escapes systemd's cescape never
	// writes: an invalid one, and "\x2e\x2e/victim" (decodes to
	// "../victim", which no merge of /etc uses).
	for name, content := range map[string]string{
		"upper":         "victim\n",
		"upper-badesc":  "victim\\q\n",
		"upper-escaped": "\\x2e\\x2e/victim\n",
	} {
		t.Run(name, func(t *testing.T) {
			r := testRoot(t, "symlink")
			v := victim(t, r)
			dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
			write(t, filepath.Join(r, "etc/.systemd-confext/work_dir"), content)
			_, err := Merge(ctx, opts(r, "yes"))
			must(t, err)
			if got, _ := readMeta(t, r, "work_dir"); got != content {
				t.Fatalf("work_dir read through the merge is %q, want the upper's %q", got, content)
			}
			_, err = Unmerge(ctx, opts(r, "yes"))
			must(t, err)
			if b, err := os.ReadFile(filepath.Join(v, "data")); err != nil || string(b) != "precious\n" {
				t.Fatalf("unmerge removed %s: %v", v, err)
			}
			if n := overlaysAt(t, filepath.Join(r, "etc")); n != 0 {
				t.Fatalf("%d overlays after unmerge", n)
			}
		})
	}
}

// failAttachAt makes every move_mount onto the directory dir fail with
// err (through the fault seam, armed in this test process only).
func failAttachAt(t *testing.T, dir string, err error) {
	fault.Set(func(kind fault.Kind, detail string) error {
		_, to, ok := strings.Cut(detail, " -> fd ")
		if kind != fault.Mount || !strings.HasPrefix(detail, "move_mount ") || !ok {
			return nil
		}
		if p, _ := os.Readlink("/proc/self/fd/" + to); p == dir {
			return err
		}
		return nil
	})
	t.Cleanup(func() { fault.Set(nil) })
}

// TestAttachFailureRemovesWorkDir (issue 8 item 4): when attaching the new
// overlay fails, the work dir this call created is removed, for a fresh
// merge and for a replacement (the merge in place and its work dir stay).
func TestAttachFailureRemovesWorkDir(t *testing.T) {
	ctx := context.Background()
	injected := errors.New("injected attach failure")
	arm := func(t *testing.T, r string) { failAttachAt(t, filepath.Join(r, "etc"), injected) }
	t.Run("fresh", func(t *testing.T) {
		r := testRoot(t, "symlink")
		dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
		arm(t, r)
		if _, err := Merge(ctx, opts(r, "yes")); !errors.Is(err, injected) {
			t.Fatalf("merge: %v, want the injected failure", err)
		}
		if got := workDirsIn(t, r); len(got) != 0 {
			t.Fatalf("work dirs left by the failed merge: %v", got)
		}
		if n := overlaysAt(t, filepath.Join(r, "etc")); n != 0 {
			t.Fatalf("%d overlays after the failed merge", n)
		}
	})
	t.Run("replace", func(t *testing.T) {
		r := testRoot(t, "symlink")
		dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
		_, err := Merge(ctx, opts(r, "yes"))
		must(t, err)
		defer Unmerge(ctx, opts(r, "yes"))
		before := workDirsIn(t, r)
		arm(t, r)
		o := opts(r, "yes")
		o.AlwaysRefresh = true
		if _, err := Refresh(ctx, o); !errors.Is(err, injected) {
			t.Fatalf("refresh: %v, want the injected failure", err)
		}
		if got := workDirsIn(t, r); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatalf("work dirs %v after the failed refresh, want %v", got, before)
		}
		if _, err := os.Stat(filepath.Join(r, "etc/dir1.conf")); err != nil {
			t.Fatal("the merge in place was lost")
		}
	})
}

// TestMultiHierarchyAllOrNothing (issue 8 item 6): a sysext merge with a
// good /usr and an /opt that cannot be merged exits with an error and
// leaves NOTHING merged, as systemd 262 does, in the two cases of
// systemd's TEST-50-DISSECT.sysext: a read-only /opt whose
// extensions.mutable/opt links to /opt itself, in mode auto (the upper dir
// would be read-only), and mode import with extensions.mutable/opt
// pointing at /opt (a loop). Before, /usr stayed merged.
func TestMultiHierarchyAllOrNothing(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ name, mode string }{{"readonly-self-link-auto", "auto"}, {"import-self-link", "import"}} {
		t.Run(c.name, func(t *testing.T) {
			r := testRoot(t, "none")
			must(t, os.MkdirAll(filepath.Join(r, "usr/bin"), 0o755))
			write(t, filepath.Join(r, "opt/hostfile"), "x\n")
			sysextImage(t, r, "tools", true)
			must(t, os.Symlink("/opt", filepath.Join(r, "var/lib/extensions.mutable/opt")))
			if c.mode == "auto" {
				opt := filepath.Join(r, "opt")
				must(t, unix.Mount(opt, opt, "", unix.MS_BIND, ""))
				must(t, unix.Mount("", opt, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
				defer unix.Unmount(opt, unix.MNT_DETACH)
			}
			res, err := Merge(ctx, sysextOpts(r, c.mode))
			if err == nil {
				t.Fatalf("merge succeeded (%v), want a failure", res.Hierarchies)
			}
			for _, h := range []string{"usr", "opt"} {
				if _, err := os.Stat(filepath.Join(r, h, ".systemd-sysext")); err == nil {
					t.Errorf("/%s merged after the failed merge: %v", h, err)
				}
			}
			if n := overlaysAt(t, filepath.Join(r, "usr")); n != 0 {
				t.Errorf("%d overlays on /usr after the failed merge", n)
			}
			if got, _ := filepath.Glob(filepath.Join(r, "var/lib/extensions.mutable/.systemd-*-workdir*")); len(got) != 0 {
				t.Errorf("work dirs left: %v", got)
			}
		})
	}
}

// TestAttachFailureUndoesEarlierHierarchies: when the attach of /opt fails
// after /usr was attached (fresh merge), /usr is detached again and its
// work dir removed.
func TestAttachFailureUndoesEarlierHierarchies(t *testing.T) {
	ctx := context.Background()
	r := testRoot(t, "none")
	must(t, os.MkdirAll(filepath.Join(r, "usr/bin"), 0o755))
	sysextImage(t, r, "tools", true)
	injected := errors.New("injected attach failure of /opt")
	failAttachAt(t, filepath.Join(r, "opt"), injected)
	if _, err := Merge(ctx, sysextOpts(r, "yes")); !errors.Is(err, injected) {
		t.Fatalf("merge: %v, want the injected failure", err)
	}
	if n := overlaysAt(t, filepath.Join(r, "usr")); n != 0 {
		t.Fatalf("/usr stays merged after /opt failed")
	}
	if got, _ := filepath.Glob(filepath.Join(r, "var/lib/extensions.mutable/.systemd-*-workdir*")); len(got) != 0 {
		t.Errorf("work dirs left: %v", got)
	}
}

// TestNoLockStillMerges: when the lock file cannot be created (the state
// dir is a regular file here), the call goes on unlocked with a warning
// rather than failing a boot.
func TestNoLockStillMerges(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	bad := filepath.Join(t.TempDir(), "not-a-dir")
	write(t, bad, "x")
	paths.StateDir = bad
	var logb bytes.Buffer
	o := opts(r, "yes")
	o.Log = oplog.New(oplog.WriterSink{W: &logb})
	ctx := context.Background()
	if _, err := Merge(ctx, o); err != nil {
		t.Fatalf("merge without a lock: %v", err)
	}
	defer Unmerge(ctx, o)
	if !strings.Contains(logb.String(), "going on without the lock") {
		t.Errorf("no warning about the missing lock:\n%s", logb.String())
	}
	if _, err := os.Stat(filepath.Join(r, "etc/dir1.conf")); err != nil {
		t.Fatal(err)
	}
}

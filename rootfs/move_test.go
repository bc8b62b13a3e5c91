package rootfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// crossFS returns a root on one tmpfs with a second tmpfs mounted at /oem,
// like /sysroot with the OEM partition, so moves between them hit EXDEV.
func crossFS(t *testing.T) (*Root, string) {
	t.Helper()
	root := testutil.Tmpfs(t)
	oem := filepath.Join(root, "oem")
	must(t, os.Mkdir(oem, 0o755))
	must(t, mount.Mount("tmpfs", oem, "tmpfs", 0, "mode=0755"))
	t.Cleanup(func() { mount.Unmount(oem, unix.MNT_DETACH) })
	return openRoot(t, root), root
}

// snapshot describes the tree at p (type, mode, owner, mtime, content,
// link targets) so copies can be compared with originals.
func snapshot(t *testing.T, p string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(p, func(q string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p, q)
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(q)
			fmt.Fprintf(&b, " -> %s", l)
		case fi.Mode().IsRegular():
			c, _ := os.ReadFile(q)
			fmt.Fprintf(&b, " %d %q", fi.ModTime().UnixNano(), c)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		return "missing: " + err.Error()
	}
	return b.String()
}

// moveFixture creates the source of kind ("file", "symlink", "dir") at
// /oem/sysext/NAME and returns its in-root name and snapshot.
func moveFixture(t *testing.T, root, kind string) (string, string) {
	t.Helper()
	dir := filepath.Join(root, "oem/sysext")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "etc/extensions"), 0o755))
	src := filepath.Join(dir, "x-"+kind)
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	switch kind {
	case "file":
		must(t, os.WriteFile(src, []byte(strings.Repeat("image data ", 1000)), 0o640))
		must(t, os.Chown(src, 12, 34))
	case "symlink":
		must(t, os.Symlink("/somewhere/else", src))
	case "dir":
		tree(t, src, map[string]string{
			"usr/lib/extension-release.d/extension-release.x": "ID=_any",
			"usr/bin/tool":  "#!/bin/sh",
			"usr/lib/link@": "../bin/tool",
			"usr/share/":    "",
		})
		must(t, os.Chmod(filepath.Join(src, "usr/bin/tool"), 0o755))
	}
	// Fixed times everywhere, so snapshots of re-created fixtures match.
	filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			os.Chtimes(p, mtime, mtime)
		}
		return nil
	})
	return "/oem/sysext/x-" + kind, snapshot(t, src)
}

func TestMoveSameFS(t *testing.T) {
	base := t.TempDir()
	tree(t, base, map[string]string{"root/a/f": "data", "root/b/": ""})
	r := openRoot(t, filepath.Join(base, "root"))
	must(t, r.Move("/a/f", "/b/g"))
	if b, _ := os.ReadFile(filepath.Join(base, "root/b/g")); string(b) != "data" {
		t.Errorf("moved content %q", b)
	}
	// Rerun: source gone, destination there, so the move is done.
	must(t, r.Move("/a/f", "/b/g"))
	if err := r.Move("/a/nothing", "/b/nothing"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Move of a missing source: %v, want ENOENT", err)
	}
}

func TestMoveAcrossFilesystems(t *testing.T) {
	for _, kind := range []string{"file", "symlink", "dir"} {
		t.Run(kind, func(t *testing.T) {
			r, root := crossFS(t)
			src, want := moveFixture(t, root, kind)
			dst := "/etc/extensions/x-" + kind
			must(t, r.Move(src, dst))
			if got := snapshot(t, filepath.Join(root, dst)); got != want {
				t.Errorf("copy differs:\n got %s\nwant %s", got, want)
			}
			if _, err := os.Lstat(filepath.Join(root, src)); !os.IsNotExist(err) {
				t.Errorf("source still there: %v", err)
			}
			if tt := temps(t, filepath.Join(root, "etc/extensions")); len(tt) != 0 {
				t.Errorf("temps left: %v", tt)
			}
		})
	}
}

func TestMoveReplacesDifferentDestination(t *testing.T) {
	r, root := crossFS(t)
	src, want := moveFixture(t, root, "file")
	must(t, os.WriteFile(filepath.Join(root, "etc/extensions/x"), []byte("older"), 0o644))
	must(t, r.Move(src, "/etc/extensions/x"))
	if got := snapshot(t, filepath.Join(root, "etc/extensions/x")); got != want {
		t.Errorf("destination not replaced:\n got %s\nwant %s", got, want)
	}
}

func TestMoveENOSPCKeepsSource(t *testing.T) {
	root := testutil.Tmpfs(t)
	full := testutil.LoopFS(t, 2048, "ext4")
	must(t, os.Mkdir(filepath.Join(root, "full"), 0o755))
	must(t, mount.Mount(full, filepath.Join(root, "full"), "", unix.MS_BIND, ""))
	t.Cleanup(func() { mount.Unmount(filepath.Join(root, "full"), unix.MNT_DETACH) })
	testutil.FillFS(t, full)
	r := openRoot(t, root)
	tree(t, root, map[string]string{"src/big": strings.Repeat("x", 1<<20), "src/tree/a/b": strings.Repeat("y", 1<<20)})
	for _, name := range []string{"big", "tree"} {
		before := snapshot(t, filepath.Join(root, "src", name))
		err := r.Move("/src/"+name, "/full/"+name)
		if !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("Move %s onto a full fs: %v, want ENOSPC", name, err)
		}
		if after := snapshot(t, filepath.Join(root, "src", name)); after != before {
			t.Errorf("source %s changed by the failed move", name)
		}
		if tt := temps(t, filepath.Join(root, "full")); len(tt) != 0 {
			t.Errorf("temps left on the full fs: %v", tt)
		}
		if _, err := os.Lstat(filepath.Join(root, "full", name)); !os.IsNotExist(err) {
			t.Errorf("destination %s appeared: %v", name, err)
		}
	}
}

// crash is the panic value used to stop a Move in the middle, as a crash
// would: no error path and no cleanup run after the fault point.
type crash struct{}

// runUntil runs f, crashing it at the nth fault point (0: never), and
// returns the steps seen and whether it crashed.
func runUntil(n int, f func() error) (steps []string, crashed bool, err error) {
	SetFault(func(step string) {
		steps = append(steps, step)
		if len(steps) == n {
			panic(crash{})
		}
	})
	defer SetFault(nil)
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(crash); !ok {
				panic(v)
			}
			crashed = true
		}
	}()
	err = f()
	return steps, false, err
}

// checkCrashState asserts the crash invariant: the source is intact or the
// destination complete, and at most one temp exists.
func checkCrashState(t *testing.T, root, src, dst, want string) {
	t.Helper()
	srcOK := snapshot(t, filepath.Join(root, src)) == want
	dstOK := snapshot(t, filepath.Join(root, dst)) == want
	if !srcOK && !dstOK {
		t.Errorf("neither source nor destination is complete")
	}
	tt := append(temps(t, filepath.Dir(filepath.Join(root, dst))), temps(t, filepath.Dir(filepath.Join(root, src)))...)
	if len(tt) > 1 {
		t.Errorf("more than one temp: %v", tt)
	}
}

// checkFinal asserts the state every (re)run must end in.
func checkFinal(t *testing.T, root, src, dst, want string) {
	t.Helper()
	if got := snapshot(t, filepath.Join(root, dst)); got != want {
		t.Errorf("destination after rerun:\n got %s\nwant %s", got, want)
	}
	if _, err := os.Lstat(filepath.Join(root, src)); !os.IsNotExist(err) {
		t.Errorf("source still present after rerun: %v", err)
	}
	for _, d := range []string{filepath.Dir(filepath.Join(root, dst)), filepath.Dir(filepath.Join(root, src))} {
		if tt := temps(t, d); len(tt) != 0 {
			t.Errorf("temps left in %s: %v", d, tt)
		}
	}
}

// TestMoveCrashAtEveryStep crashes a cross-filesystem Move at each of its
// fault points in turn, checks the crash invariant, reruns Move and checks
// that it converges.
func TestMoveCrashAtEveryStep(t *testing.T) {
	for _, kind := range []string{"file", "symlink", "dir"} {
		t.Run(kind, func(t *testing.T) {
			r, root := crossFS(t)
			src, want := moveFixture(t, root, kind)
			dst := "/etc/extensions/x"
			steps, _, err := runUntil(0, func() error { return r.Move(src, dst) })
			must(t, err)
			if len(steps) < 5 {
				t.Fatalf("only %d fault points in a cross-fs move: %v", len(steps), steps)
			}
			t.Logf("%d steps: %s", len(steps), strings.Join(steps, " | "))
			for n := 1; n <= len(steps); n++ {
				must(t, os.RemoveAll(filepath.Join(root, "oem/sysext")))
				must(t, os.RemoveAll(filepath.Join(root, "etc")))
				moveFixture(t, root, kind)
				_, crashed, err := runUntil(n, func() error { return r.Move(src, dst) })
				if !crashed {
					t.Fatalf("step %d (%s): no crash (err %v)", n, steps[n-1], err)
				}
				checkCrashState(t, root, src, dst, want)
				if err := r.Move(src, dst); err != nil {
					t.Fatalf("rerun after crash at step %d (%s): %v", n, steps[n-1], err)
				}
				checkFinal(t, root, src, dst, want)
				if t.Failed() {
					t.Fatalf("after crash at step %d (%s)", n, steps[n-1])
				}
			}
		})
	}
}

// TestMoveConvergesWithoutCopy: a complete destination plus a present
// source (a crash between rename and unlink) only removes the source.
func TestMoveConvergesWithoutCopy(t *testing.T) {
	r, root := crossFS(t)
	src, want := moveFixture(t, root, "dir")
	must(t, exec.Command("cp", "-a", filepath.Join(root, src), filepath.Join(root, "etc/extensions/x")).Run())
	steps, _, err := runUntil(0, func() error { return r.Move(src, "/etc/extensions/x") })
	must(t, err)
	for _, s := range steps {
		if strings.Contains(s, "copy") || strings.Contains(s, "rename temp to") {
			t.Errorf("converging move copied again: %v", steps)
			break
		}
	}
	checkFinal(t, root, src, "/etc/extensions/x", want)
}

// moveHelperEnv makes TestMoveHelper run one Move in a sub-process.
const moveHelperEnv = "ROOTFS_MOVE_HELPER_ROOT"

// TestMoveHelper is the sub-process of TestMoveKilledAtEveryStep: it runs
// Move under FaultFromEnv, so EXT_SETUP_ROOT_KILL_AT_STEP kills it for real.
func TestMoveHelper(t *testing.T) {
	root := os.Getenv(moveHelperEnv)
	if root == "" {
		t.Skip("sub-process helper of TestMoveKilledAtEveryStep")
	}
	r := openRoot(t, root)
	must(t, FaultFromEnv(os.Getenv))
	defer SetFault(nil)
	kind := os.Getenv(moveHelperEnv + "_KIND")
	must(t, r.Move("/oem/sysext/x-"+kind, "/etc/extensions/x.raw"))
}

// TestMoveKilledAtEveryStep SIGKILLs a real process at every fault point of
// a cross-filesystem Move and checks that a rerun converges.
func TestMoveKilledAtEveryStep(t *testing.T) {
	for _, kind := range []string{"file", "symlink", "dir"} {
		t.Run(kind, func(t *testing.T) { testMoveKilled(t, kind) })
	}
}

func testMoveKilled(t *testing.T, kind string) {
	_, root := crossFS(t)
	stepLog := filepath.Join(t.TempDir(), "steps")
	run := func(killAt int) error {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMoveHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), moveHelperEnv+"="+root, moveHelperEnv+"_KIND="+kind,
			StepLogEnv+"="+stepLog, KillAtStepEnv+"=")
		if killAt > 0 {
			cmd.Env = append(cmd.Env, KillAtStepEnv+"="+fmt.Sprint(killAt))
		}
		out, err := cmd.CombinedOutput()
		if err != nil && killAt == 0 {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return err
	}
	src, want := moveFixture(t, root, kind)
	dst := "/etc/extensions/x.raw"
	must(t, run(0))
	log, err := os.ReadFile(stepLog)
	must(t, err)
	steps := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(steps) < 5 {
		t.Fatalf("only %d steps logged: %q", len(steps), log)
	}
	checkFinal(t, root, src, dst, want)
	for n := 1; n <= len(steps); n++ {
		must(t, os.RemoveAll(filepath.Join(root, "oem/sysext")))
		must(t, os.RemoveAll(filepath.Join(root, "etc")))
		moveFixture(t, root, kind)
		err := run(n)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("step %d (%s): want SIGKILL, got %v", n, steps[n-1], err)
		}
		checkCrashState(t, root, src, dst, want)
		if err := run(0); err != nil {
			t.Fatalf("rerun after kill at step %d (%s): %v", n, steps[n-1], err)
		}
		checkFinal(t, root, src, dst, want)
		if t.Failed() {
			t.Fatalf("after kill at step %d (%s)", n, steps[n-1])
		}
	}
}

func TestFaultFromEnv(t *testing.T) {
	defer SetFault(nil)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if err := FaultFromEnv(env(map[string]string{KillAtStepEnv: "zero"})); err == nil {
		t.Error("bad step number accepted")
	}
	log := filepath.Join(t.TempDir(), "log")
	must(t, FaultFromEnv(env(map[string]string{StepLogEnv: log})))
	base := t.TempDir()
	r := openRoot(t, base)
	must(t, r.WriteFileAtomic("f", []byte("x"), 0o644))
	b, err := os.ReadFile(log)
	must(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "1 ") {
		t.Errorf("step log %q", b)
	}
	sort.Strings(lines)
}

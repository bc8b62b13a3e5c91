package prepare

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// crashChildEnv makes the test binary a crash child: it runs prepare on
// the root in crashRootEnv (default configuration less tmpfiles and OEM)
// and SIGKILLs itself at side effect number N (1-based).
const (
	crashChildEnv = "EXT_SETUP_ROOT_PREPARE_CRASH_AT"
	crashRootEnv  = "EXT_SETUP_ROOT_PREPARE_CRASH_ROOT"
)

func crashChild() {
	at := os.Getenv(crashChildEnv)
	if at == "" {
		return
	}
	n, _ := strconv.Atoi(at)
	count := 0
	faultHook = func(string) {
		count++
		if count == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	_, err := Run(context.Background(), Options{Root: os.Getenv(crashRootEnv), Config: diffConfig()})
	if err != nil {
		os.Exit(3)
	}
	os.Exit(0)
}

// TestCrashAtEveryStep kills a run of prepare (a child process) right
// before each of its side effects in turn, then runs it again to the end:
// the tree must be exactly the one an uninterrupted run leaves (so nothing
// the user changed was removed, and nothing is left half done).
func TestCrashAtEveryStep(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setfacl")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	keep := `/etc(/ssh(/.*)?)?|/home(/core(/.*)?)?|/var`
	for _, sc := range []scenario{dedupScenario(), whiteoutScenario(), resetScenario(keep)} {
		t.Run(sc.name, func(t *testing.T) {
			ref := setupRoot(t, sc)
			res, _ := runOurs(t, ref, diffConfig(), false)
			want := snapshot(t, ref, "/usr")
			steps := len(res.Actions)
			if steps < 3 {
				t.Fatalf("only %d side effects: the scenario tests nothing", steps)
			}
			for n := 1; n <= steps; n++ {
				root := setupRoot(t, sc)
				c := exec.Command(exe, "-test.run=^$")
				c.Env = append(os.Environ(), crashChildEnv+"="+strconv.Itoa(n), crashRootEnv+"="+root)
				out, err := c.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("step %d: child not killed: %v\n%s", n, err, out)
				}
				runOurs(t, root, diffConfig(), false)
				if d := diffSnap(want, snapshot(t, root, "/usr")); d != "" {
					t.Fatalf("killed before step %d of %d, then rerun: differs from an uninterrupted run:\n%s", n, steps, d)
				}
			}
			t.Logf("%s: killed before each of %d steps, each rerun converged", sc.name, steps)
		})
	}
}

// TestRecheckBeforeRemove: a file changed between the comparison and the
// unlink (here: by the fault hook, right before the removal) is kept.
func TestRecheckBeforeRemove(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setfacl")
	root := setupRoot(t, dedupScenario())
	faultHook = func(step string) {
		switch step {
		case "dedup /etc/same":
			os.WriteFile(root+"/etc/same", []byte("user edit\n"), 0o644)
		case "dedup /etc/link":
			os.Remove(root + "/etc/link")
			os.Symlink("elsewhere", root+"/etc/link")
		}
	}
	defer func() { faultHook = nil }()
	res, _ := runOurs(t, root, diffConfig(), false)
	if b, err := os.ReadFile(root + "/etc/same"); err != nil || string(b) != "user edit\n" {
		t.Errorf("/etc/same edited before the unlink: %q %v", b, err)
	}
	if l, err := os.Readlink(root + "/etc/link"); err != nil || l != "elsewhere" {
		t.Errorf("/etc/link replaced before the unlink: %q %v", l, err)
	}
	for _, a := range res.Actions {
		if a.Path == "/etc/same" || a.Path == "/etc/link" {
			t.Errorf("reported as removed: %s", a)
		}
	}
}

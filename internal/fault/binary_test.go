package fault_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// linksRoot is a root where `links` has side effects (one link to create).
func linksRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range map[string]string{
		"usr/lib/os-release":                     "ID=flatcar\nVERSION=1.0\n",
		"usr/share/flatcar/enabled-sysext.conf":  "zfs\n",
		"etc/flatcar/sysext/flatcar-zfs-1.0.raw": "img",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func runLinks(bin, root, stepLog string) (string, error) {
	c := exec.Command(bin, "links", "--root="+root)
	c.Env = []string{"PATH=/usr/bin:/bin", "EXT_SETUP_ROOT_LOG=stderr", "EXT_SETUP_ROOT_PROC_CMDLINE=/dev/null",
		fault.StepLogEnv + "=" + stepLog, fault.KillAtStepEnv + "=1",
		fault.FailAtStepEnv + "=1", fault.FailErrnoEnv + "=EIO"}
	out, err := c.CombinedOutput()
	return string(out), err
}

// TestProductionBinaryIgnoresHooks runs the production binary (make build's)
// and the test-hooks binary with every fault variable set on a root where
// `links` changes something: the production binary must log no step, not
// die and make its change; the test-hooks binary must be killed at step 1
// (so the variables are the right ones and the test can fail).
func TestProductionBinaryIgnoresHooks(t *testing.T) {
	prod := testutil.BuildBinary(t)
	hooks := testutil.BuildTestHooksBinary(t)

	root := linksRoot(t)
	stepLog := filepath.Join(t.TempDir(), "steps")
	out, err := runLinks(prod, root, stepLog)
	if err != nil {
		t.Fatalf("production binary with fault variables set: %v\n%s", err, out)
	}
	if _, err := os.Stat(stepLog); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("production binary wrote a step log (%v)", err)
	}
	if tgt, err := os.Readlink(filepath.Join(root, "etc/extensions/flatcar-zfs.raw")); err != nil || tgt != "/etc/flatcar/sysext/flatcar-zfs-1.0.raw" {
		t.Errorf("production binary: link %q, %v\n%s", tgt, err, out)
	}

	root = linksRoot(t)
	out, err = runLinks(hooks, root, stepLog)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("test-hooks binary: want SIGKILL at step 1, got %v\n%s", err, out)
	}
	if b, err := os.ReadFile(stepLog); err != nil || len(b) == 0 {
		t.Errorf("test-hooks binary wrote no step log: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/extensions/flatcar-zfs.raw")); err == nil {
		t.Errorf("test-hooks binary made its change though killed before its first step")
	}
}

// TestFromEnv checks the variables' parsing and the hook's counting.
func TestFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, bad := range []map[string]string{
		{fault.KillAtStepEnv: "zero"}, {fault.KillAtStepEnv: "0"},
		{fault.FailAtStepEnv: "2"}, {fault.FailAtStepEnv: "2", fault.FailErrnoEnv: "ENOENT"},
	} {
		if _, err := fault.FromEnv(env(bad)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	if h, err := fault.FromEnv(env(nil)); h != nil || err != nil {
		t.Errorf("no variables: hook %v, %v", h != nil, err)
	}
	log := filepath.Join(t.TempDir(), "log")
	h, err := fault.FromEnv(env(map[string]string{fault.StepLogEnv: log, fault.FailAtStepEnv: "2", fault.FailErrnoEnv: "ENOSPC"}))
	if err != nil {
		t.Fatal(err)
	}
	fault.Set(h)
	defer fault.Set(nil)
	if err := fault.Point(fault.Mkdir, "a"); err != nil {
		t.Errorf("step 1: %v", err)
	}
	if err := fault.Point(fault.Write, "b c"); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("step 2: %v, want ENOSPC", err)
	}
	if err := fault.Point(fault.Fsync, "d"); err != nil {
		t.Errorf("step 3: %v", err)
	}
	b, _ := os.ReadFile(log)
	if want := "1 mkdir \"a\"\n2 write \"b c\"\n3 fsync \"d\"\n"; string(b) != want {
		t.Errorf("step log %q, want %q", b, want)
	}
}

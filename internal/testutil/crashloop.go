package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// CrashLoop is a kill-at-every-step test of one command of the -tags
// testhooks binary (internal/fault): an uninterrupted run on a fresh
// fixture counts the command's side-effect steps (EXT_SETUP_ROOT_STEP_LOG);
// then for every step N a run on a fresh fixture is killed (SIGKILL) just
// before step N (EXT_SETUP_ROOT_KILL_AT_STEP), what it left is checked, a
// rerun must succeed and reach the final state, and no temporary file may
// be left. The fetch and abslots crash tests share it.
type CrashLoop struct {
	// Bin is the testhooks binary (BuildTestHooksBinary); Args go before
	// --root=ROOT.
	Bin  string
	Args []string
	// Fixture returns a fresh root.
	Fixture func() string
	// MinSteps is the fewest steps an uninterrupted run must log: fewer
	// means the fault injection is not wired.
	MinSteps int
	// Check checks root after the uninterrupted run and every rerun
	// (done) and after every kill (!done); when names the moment.
	Check func(root, when string, done bool)
	// IsTemp reports a temporary file name that must not survive a rerun.
	IsTemp func(name string) bool
}

// Run runs the loop as described on CrashLoop.
func (c CrashLoop) Run(t *testing.T) {
	t.Helper()
	dir := c.Fixture()
	stepLog := filepath.Join(t.TempDir(), "steps")
	if err := c.run(t, dir, "EXT_SETUP_ROOT_STEP_LOG="+stepLog); err != nil {
		t.Fatalf("uninterrupted run: %v", err)
	}
	c.Check(dir, "uninterrupted run", true)
	raw, err := os.ReadFile(stepLog)
	if err != nil {
		t.Fatal(err)
	}
	steps := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(raw) == 0 || len(steps) < c.MinSteps {
		t.Fatalf("only %d steps logged (%q); fault injection not wired?", len(steps), steps)
	}
	for n := 1; n <= len(steps); n++ {
		dir := c.Fixture()
		err := c.run(t, dir, "EXT_SETUP_ROOT_KILL_AT_STEP="+strconv.Itoa(n))
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("step %d (%s): want the process killed, got %v", n, steps[n-1], err)
		}
		c.Check(dir, fmt.Sprintf("killed before step %d (%s)", n, steps[n-1]), false)
		if err := c.run(t, dir); err != nil {
			t.Fatalf("rerun after kill at step %d (%s): %v", n, steps[n-1], err)
		}
		c.Check(dir, fmt.Sprintf("rerun after kill before step %d (%s)", n, steps[n-1]), true)
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && c.IsTemp(fi.Name()) {
				t.Errorf("after kill at step %d (%s) and rerun: temporary file %s left", n, steps[n-1], p)
			}
			return nil
		})
	}
	t.Logf("killed and recovered at each of %d steps", len(steps))
}

// run runs the command on root with env added; its output goes to the
// test log when it fails under -v.
func (c CrashLoop) run(t *testing.T, root string, env ...string) error {
	t.Helper()
	cmd := exec.Command(c.Bin, append(append([]string(nil), c.Args...), "--root="+root)...)
	cmd.Env = append([]string{"PATH=/usr/bin:/usr/sbin", "EXT_SETUP_ROOT_LOG=stderr", "EXT_SETUP_ROOT_PROC_CMDLINE=/dev/null"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil && testing.Verbose() {
		t.Logf("%s", out)
	}
	return err
}

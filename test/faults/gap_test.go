package faults

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// refreshPhase is the index in phases of confext-refresh: prepare(t, bin,
// refreshPhase) gives a root merged by the boot stages with a new confext
// added.
func refreshPhase(t *testing.T) int {
	for i, p := range phases {
		if p.name == "confext-refresh" {
			return i
		}
	}
	t.Fatal("no confext-refresh phase")
	return 0
}

var gapRefresh = []string{"confext", "--root=ROOT", "--mutable=auto", "--no-beneath", "refresh"}

// TestGapAttachFault (issue 14 item 7): `confext refresh --no-beneath`
// with the attach of the new merge failing (EBUSY injected at the
// move_mount step right after the old merge was unmounted) must leave /etc
// showing the old merge, with every file, not the bare upper dir; a rerun
// then reaches the state of an undisturbed run. The binary is the
// -tags testhooks one; the step is found in the step log of an undisturbed
// run.
func TestGapAttachFault(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireFilesystem(t, "overlay", "squashfs")
	bin := testutil.BuildTestHooksBinary(t)
	i := refreshPhase(t)

	ref := prepare(t, bin, i)
	before := ref.snapshot()
	stepLog := filepath.Join(t.TempDir(), "steps")
	out, err := ref.run(gapRefresh, fault.StepLogEnv+"="+stepLog)
	if err != nil || !strings.Contains(out, "with a gap") {
		t.Fatalf("undisturbed gap refresh: %v\n%s", err, out)
	}
	after := ref.snapshot()
	n := 0
	unmounted := false
	for _, s := range parseSteps(t, stepLog, ref.root) {
		if s.kind == fault.Unmount {
			unmounted = true
		}
		if unmounted && s.kind == fault.Mount && strings.HasPrefix(s.detail, "move_mount ") {
			n = s.n
			break
		}
	}
	if n == 0 {
		t.Fatalf("no move_mount after an unmount in the step log of the gap refresh")
	}

	e := prepare(t, bin, i)
	out, err = e.run(gapRefresh, fault.StepLogEnv+"="+filepath.Join(t.TempDir(), "steps"),
		fault.FailAtStepEnv+"="+strconv.Itoa(n), fault.FailErrnoEnv+"=EBUSY")
	if err == nil {
		t.Fatalf("refresh with the attach failing succeeded:\n%s", out)
	}
	mid := e.snapshot()
	checkMid(t, phases[i], before, after, mid)
	if t.Failed() {
		t.Fatalf("after the failed attach; its output:\n%s", out)
	}
	if !strings.Contains(out, "the old merge was put back") {
		t.Errorf("the error does not say the old merge was put back:\n%s", out)
	}
	if out2, err := e.run(gapRefresh); err != nil {
		t.Fatalf("rerun: %v\n%s", err, out2)
	}
	final := e.snapshot()
	final.loops, final.lfiles = after.loops, after.lfiles
	if d := diff(after, final); d != "" {
		t.Fatalf("after the rerun the state differs from an undisturbed run:\n%s", d)
	}
}

// TestNoBeneathEnvTestOnly (issue 14 item 7): EXT_SETUP_ROOT_NO_BENEATH=1
// switches only the -tags testhooks binary onto the unmount-then-mount
// path; the production binary replaces the merge beneath (no gap) unless
// --no-beneath is given.
func TestNoBeneathEnvTestOnly(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireFilesystem(t, "overlay", "squashfs")
	if !mount.Kernel().Beneath {
		testutil.Gate(t, "kernel %s has no MOVE_MOUNT_BENEATH: every replacement has a gap", mount.Kernel().Release)
	}
	i := refreshPhase(t)
	refresh := []string{"confext", "--root=ROOT", "--mutable=auto", "refresh"}
	for _, c := range []struct {
		name    string
		bin     string
		args    []string
		wantGap bool
	}{
		{"production", testutil.BuildBinary(t), refresh, false},
		{"production --no-beneath", testutil.BuildBinary(t), gapRefresh, true},
		{"testhooks", testutil.BuildTestHooksBinary(t), refresh, true},
	} {
		e := prepare(t, c.bin, i)
		out, err := e.run(c.args, "EXT_SETUP_ROOT_NO_BENEATH=1")
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, out)
		}
		if got := strings.Contains(out, "with a gap"); got != c.wantGap {
			t.Errorf("%s binary with EXT_SETUP_ROOT_NO_BENEATH=1: gap %v, want %v\n%s", c.name, got, c.wantGap, out)
		}
	}
}

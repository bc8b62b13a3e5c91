// Package faults is the fault-injection test over the whole binary: every
// side-effect step of the boot stages and of confext merge, refresh and
// unmerge is, in turn, preceded by a SIGKILL and made to fail with the
// errors a real system returns there; a rerun must always reach the state
// of an undisturbed run. Root tier: it runs in a private mount namespace,
// on tmpfs, with the binary built with -tags testhooks.
package faults

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

// phase is one command of the sequence; before runs first, undisturbed (it
// adds input, as a user would between two commands).
type phase struct {
	name   string
	args   []string
	rerun  []string // the command that recovers (default: args again)
	before func(e *env)
	// mergedBefore: /etc carries a merge when the phase starts, so it must
	// stay mounted through any fault.
	mergedBefore bool
}

var phases = []phase{
	{name: "boot-pre", args: []string{"boot", "--stage=pre", "--root=ROOT"}},
	{name: "boot-post", args: []string{"boot", "--stage=post", "--root=ROOT"}, mergedBefore: true},
	{name: "confext-refresh", args: []string{"confext", "--root=ROOT", "--mutable=auto", "refresh"}, mergedBefore: true,
		before: func(e *env) {
			testutil.WriteTree(e.t, e.root, map[string]string{
				"var/lib/confexts/60-new/etc/extension-release.d/extension-release.60-new": "ID=_any\n",
				"var/lib/confexts/60-new/etc/new.conf":                                     "new confext\n",
			})
		}},
	{name: "confext-unmerge", args: []string{"confext", "--root=ROOT", "unmerge"}, mergedBefore: true},
	// A failed or killed merge may have left a merge in place; refresh is
	// the command that recovers from any state (it merges when nothing is
	// merged), as the boot stages do on a rerun.
	{name: "confext-merge", args: []string{"confext", "--root=ROOT", "--mutable=auto", "merge"},
		rerun: []string{"confext", "--root=ROOT", "--mutable=auto", "refresh"}},
}

// step is one line of the step log.
type step struct {
	n      int
	kind   fault.Kind
	detail string
}

func parseSteps(t testing.TB, p, root string) []step {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []step
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 {
			t.Fatalf("step log line %q", l)
		}
		n, _ := strconv.Atoi(f[0])
		d, err := strconv.Unquote(f[2])
		if err != nil {
			d = f[2]
		}
		out = append(out, step{n, fault.Kind(f[1]), stateNameRE.ReplaceAllString(strings.ReplaceAll(d, filepath.Dir(root), "BASE"), "-*")})
	}
	return out
}

// prepare makes a fresh root and runs the phases before index i.
func prepare(t testing.TB, bin string, i int) *env {
	t.Helper()
	e := newEnv(t, bin)
	for _, p := range phases[:i+1] {
		if p.before != nil {
			p.before(e)
		}
		if p.name == phases[i].name {
			break
		}
		if out, err := e.run(p.args); err != nil {
			t.Fatalf("undisturbed %s: %v\n%s", p.name, err, out)
		}
	}
	return e
}

// injection is one fault: kill before step n, or fail step n with errno.
type injection struct {
	step  step
	errno string // "" = SIGKILL
}

func (in injection) short() string {
	what := "kill"
	if in.errno != "" {
		what = in.errno
	}
	return fmt.Sprintf("%d-%s-%s", in.step.n, in.step.kind, what)
}

func (in injection) String() string {
	what := "kill"
	if in.errno != "" {
		what = in.errno
	}
	return fmt.Sprintf("%s@%d(%s %s)", what, in.step.n, in.step.kind, in.step.detail)
}

// TestFaultsEveryStep enumerates the steps of each phase from a traced
// undisturbed run (so a new step is covered without editing this test),
// then for each step (a) SIGKILLs the binary just before it and (b) fails
// it with each error of fault.Errnos for its kind (EXT_SETUP_ROOT_FAULTS=
// representative: only the first), checks the state right after the fault
// (/etc still mounted with every file the phase keeps, every image still
// present, at most the two overlays of a replacement in progress), reruns the phase and requires the state of an
// undisturbed run: the same mounts (nothing leaked or stacked), the same
// merged views and file systems (no work dir or temp file left), the same
// loop devices, every image exactly once.
func TestFaultsEveryStep(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireFilesystem(t, "overlay", "squashfs")
	bin := testutil.BuildTestHooksBinary(t)
	full := os.Getenv("EXT_SETUP_ROOT_FAULTS") != "representative"
	start := time.Now()
	var total, kills, errs int
	var summary []string
	for i, p := range phases {
		// The reference: state before and after an undisturbed run, and
		// its steps; a run in which a loop device race added a retry
		// step (two LOOP_CONFIGURE in a row) is taken again.
		var before, after state
		var steps []step
		for try := 0; ; try++ {
			ref := prepare(t, bin, i)
			before = ref.snapshot()
			stepLog := filepath.Join(t.TempDir(), "steps")
			if out, err := ref.run(p.args, fault.StepLogEnv+"="+stepLog); err != nil {
				t.Fatalf("%s: undisturbed run: %v\n%s", p.name, err, out)
			}
			after = ref.snapshot()
			steps = parseSteps(t, stepLog, ref.root)
			if !loopRetried(steps) || try == 4 {
				break
			}
		}
		if len(steps) < 3 {
			t.Fatalf("%s: only %d steps logged: fault points not wired?", p.name, len(steps))
		}
		var ins []injection
		for _, s := range steps {
			ins = append(ins, injection{step: s})
			es := fault.Errnos(s.kind)
			if !full && len(es) > 1 {
				es = es[:1]
			}
			for _, e := range es {
				ins = append(ins, injection{step: s, errno: e})
			}
		}
		nk, ne := 0, 0
		for _, in := range ins {
			if in.errno == "" {
				nk++
			} else {
				ne++
			}
			t.Run(p.name+"/"+in.short(), func(t *testing.T) {
				runInjection(t, bin, i, p, in, before, after)
			})
			if t.Failed() {
				t.Fatalf("stopping at the first failure")
			}
		}
		total += len(ins)
		kills += nk
		errs += ne
		summary = append(summary, fmt.Sprintf("%s: %d steps, %d kills, %d errors", p.name, len(steps), nk, ne))
	}
	t.Logf("fault injection: %d runs (%d kills, %d injected errors) in %s\n%s",
		total, kills, errs, time.Since(start).Round(time.Second), strings.Join(summary, "\n"))
}

// runInjection runs one fault case. Step numbers are deterministic except
// for a loop device that another process grabbed between LOOP_CTL_GET_FREE
// and LOOP_CONFIGURE (the engine retries with the next one, one step more):
// a case whose step n turns out to be another step is tried again, up to
// three times.
func runInjection(t *testing.T, bin string, i int, p phase, in injection, before, after state) {
	for try := 1; ; try++ {
		if runOnce(t, bin, i, p, in, before, after, try == 3) {
			return
		}
		t.Logf("try %d: step %d was another step (a loop device race); again", try, in.step.n)
	}
}

func runOnce(t *testing.T, bin string, i int, p phase, in injection, before, after state, last bool) bool {
	e := prepare(t, bin, i)
	stepLog := filepath.Join(t.TempDir(), "steps")
	env := []string{fault.StepLogEnv + "=" + stepLog}
	if in.errno == "" {
		env = append(env, fault.KillAtStepEnv+"="+strconv.Itoa(in.step.n))
	} else {
		env = append(env, fault.FailAtStepEnv+"="+strconv.Itoa(in.step.n), fault.FailErrnoEnv+"="+in.errno)
	}
	out, err := e.run(p.args, env...)
	var ee *exec.ExitError
	killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	t.Logf("%s", in)
	if in.errno == "" && !killed {
		t.Fatalf("want SIGKILL, got %v\n%s", err, out)
	}
	if in.errno != "" && killed {
		t.Fatalf("killed by an injected error?\n%s", out)
	}
	// The steps up to n must be the enumerated ones: numbering is
	// deterministic, so step n is the step meant.
	got := parseSteps(t, stepLog, e.root)
	if len(got) < in.step.n || got[in.step.n-1].detail != in.step.detail {
		if !last {
			return false
		}
		t.Fatalf("step %d is not %q in this run (nondeterministic steps?): %v", in.step.n, in.step.detail, got)
	}
	mid := e.snapshot()
	checkMid(t, p, before, after, mid)
	if t.Failed() {
		t.Fatalf("after the fault; its output:\n%s", out)
	}
	rerun := p.rerun
	if rerun == nil {
		rerun = p.args
	}
	if out2, err := e.run(rerun); err != nil {
		t.Fatalf("rerun: %v\n%s\nfaulted run's output:\n%s", err, out2, out)
	}
	final := e.snapshot()
	// Loop devices: an image file stored inside the other class's merge
	// (sysexts under /etc, the default confext under /usr) keeps a
	// replaced, detached overlay of that class alive, and with it its
	// layers' loop devices, until shutdown; a rerun that replaces a merge
	// once more than the undisturbed run keeps one more. So the test
	// requires the same set of backing files (nothing attached for an
	// image that moved or is no longer merged) and at most twice the
	// undisturbed run's count, not the exact count. A loop device with
	// autoclear detaches asynchronously: give it up to 3 s.
	for deadline := time.Now().Add(3 * time.Second); !sameSet(final.lfiles, after.lfiles) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		final.lfiles = e.loopFiles()
	}
	if !sameSet(final.lfiles, after.lfiles) || len(final.lfiles) > 2*len(after.lfiles) {
		t.Fatalf("loop devices after the rerun: %v, undisturbed run: %v", final.lfiles, after.lfiles)
	}
	final.loops, final.lfiles = after.loops, after.lfiles
	if d := diff(after, final); d != "" {
		t.Fatalf("after the rerun the state differs from an undisturbed run:\n%s\nfaulted run's output:\n%s", d, out)
	}
	for name, n := range imageCounts(after) {
		if isImage(name) && n == 1 && imageCounts(final)[name] != 1 {
			t.Fatalf("image %s present %d times after the rerun", name, imageCounts(final)[name])
		}
	}
	return true
}

func isImage(name string) bool {
	for _, n := range imageNames {
		if n == name {
			return true
		}
	}
	return false
}

// checkMid checks the state right after a fault: if /etc was merged it is
// still mounted (one overlay, or two in the middle of a replacement), and it holds every
// file that both the state before and after the phase have, each with the
// content of one of them; every image that existed before still exists.
func checkMid(t *testing.T, p phase, before, after, mid state) {
	t.Helper()
	if p.mergedBefore {
		n := 0
		for _, m := range mid.mounts {
			if m == "etc overlay" {
				n++
			}
		}
		// An unmerge may have removed it; anything else must leave a
		// merge. Two are stacked when the kill fell between mounting the
		// new one beneath and detaching the old one (no gap; the rerun
		// must clean it up, which the final comparison checks).
		if n > 2 || (n == 0 && p.name != "confext-unmerge") {
			t.Errorf("/etc has %d overlays after the fault: %v", n, mid.mounts)
		}
		for k, bv := range before.merged {
			av, ok := after.merged[k]
			if !ok || !strings.HasPrefix(k, "etc/") || strings.HasPrefix(k, "etc/.systemd-confext") {
				continue
			}
			mv, present := mid.merged[k]
			if !present {
				t.Errorf("/etc lost %s", k)
			} else if mv != bv && mv != av {
				t.Errorf("/etc/%s has neither the old nor the new content", k)
			}
		}
	}
	bc, mc := imageCounts(before), imageCounts(mid)
	for name, n := range bc {
		if isImage(name) && n > 0 && mc[name] == 0 {
			t.Errorf("image %s lost", name)
		}
	}
}

// sameSet reports whether a and b hold the same distinct strings.
func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, x := range a {
		m[x] |= 1
	}
	for _, x := range b {
		m[x] |= 2
	}
	for _, v := range m {
		if v != 3 {
			return false
		}
	}
	return true
}

// loopRetried reports a loop set-up retried after a race with another
// process (two LOOP_CONFIGURE steps in a row).
func loopRetried(steps []step) bool {
	for i := 1; i < len(steps); i++ {
		if steps[i].kind == fault.Loop && steps[i-1].kind == fault.Loop {
			return true
		}
	}
	return false
}

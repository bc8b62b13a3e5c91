package boot

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/prepare"
)

// fakePrep answers Prepare from its fields and records the call in the
// engines' call list.
type fakePrep struct {
	f   *fakeEngines
	res *prepare.Result
	err error
	dry bool
	req PrepareRequest
}

func (p *fakePrep) Prepare(_ context.Context, req PrepareRequest) (*prepare.Result, error) {
	p.dry, p.req = req.DryRun, req
	p.f.calls = append(p.f.calls, "prepare")
	return p.res, p.err
}

func TestPrepareRunsFirstAndIsCounted(t *testing.T) {
	f := newFake()
	p := &fakePrep{f: f, res: &prepare.Result{Reset: 3, Whiteouts: 1, Dedup: 7, MachineID: true, Tmpfiles: "ran",
		Actions: []prepare.Action{{Duty: "dedup", Op: "remove", Path: "/etc/x"}}}}
	s, err, _ := run(t, f, Options{Stage: StagePre, Prep: p})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.calls, ","); got != "prepare,link,status confext,merge confext" {
		t.Errorf("calls = %s", got)
	}
	want := "prepare: 3 reset, 1 whiteouts, 7 deduplicated, blank machine-id removed, tmpfiles ran, mutable link"
	if !strings.Contains(s.String(), want) {
		t.Errorf("summary = %s\nwant %s", s, want)
	}
	if f.lastReq[Confext].AlwaysRefresh {
		t.Errorf("no merge below: no forced refresh")
	}
}

// TestPrepareBelowMergeForcesRefresh: a rerun that changed the real /etc
// underneath the merge must make the refresh remount, or the overlay may
// go on showing removed upper entries.
func TestPrepareBelowMergeForcesRefresh(t *testing.T) {
	for _, changed := range []bool{true, false} {
		f := newFake()
		f.merged[Confext] = true
		res := &prepare.Result{BelowMerge: true}
		if changed {
			res.Dedup = 1
			res.Actions = []prepare.Action{{Duty: "dedup", Op: "remove", Path: "/etc/x"}}
		}
		_, err, _ := run(t, f, Options{Stage: StagePre, Prep: &fakePrep{f: f, res: res}})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.lastReq[Confext].AlwaysRefresh; got != changed {
			t.Errorf("changed=%v: AlwaysRefresh=%v", changed, got)
		}
	}
}

func TestPrepareFailureDoesNotStopTheMerge(t *testing.T) {
	f := newFake()
	s, err, log := run(t, f, Options{Stage: StagePre, Prep: &fakePrep{f: f, err: errors.New("boom")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.calls, ","); got != "prepare,link,status confext,merge confext" {
		t.Errorf("calls = %s", got)
	}
	if !strings.Contains(s.String(), "prepare: failed") || !strings.Contains(log, "boom") {
		t.Errorf("summary = %s\n%s", s, log)
	}
}

func TestPrepareSwitchesAndDryRun(t *testing.T) {
	f := newFake()
	s, _, _ := run(t, f, Options{Stage: StagePre, Prep: &fakePrep{f: f}, Cmdline: Cmdline{PrepareOff: true}})
	if strings.Contains(strings.Join(f.calls, ","), "prepare") || !strings.Contains(s.String(), "prepare: disabled by ext-setup-root.prepare=0") {
		t.Errorf("prepare=0: calls %v, summary %s", f.calls, s)
	}
	f = newFake()
	s, _, _ = run(t, f, Options{Stage: StagePre, Prep: &fakePrep{f: f, res: &prepare.Result{}}, Cmdline: Cmdline{PreOff: true}})
	if len(f.calls) != 0 {
		t.Errorf("stage.pre=0 still called %v", f.calls)
	}
	f = newFake()
	p := &fakePrep{f: f, res: &prepare.Result{}}
	run(t, f, Options{Stage: StagePre, Prep: p, DryRun: true})
	if !p.dry {
		t.Errorf("dry run not passed on")
	}
	c, err := ParseCmdline(strings.NewReader("ext-setup-root.prepare=0"))
	if err != nil || !c.PrepareOff {
		t.Errorf("cmdline: %+v %v", c, err)
	}
}

func TestConfigPrepareTable(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("# nothing\n"), "boot.toml")
	if err != nil || !c.Prepare.Enabled || c.Prepare.Dedup.DefaultsDirs[0] != "/usr/share/flatcar/etc" {
		t.Fatalf("defaults: %+v %v", c.Prepare, err)
	}
	in := "[prepare.dedup]\ndefaults_dirs = [\"/usr/share/acme/etc\"]\nopt_out_flag = \"\"\n[prepare.reset]\nenabled = false\n[prepare.tmpfiles]\nconfigs = [\"acme.conf\"]\ncommands = []\n"
	c, err = ParseConfig(strings.NewReader(in), "boot.toml")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Prepare
	if p.Dedup.DefaultsDirs[0] != "/usr/share/acme/etc" || p.Dedup.OptOutFlag != "" || p.Dedup.Etc != "/etc" || p.Reset.Enabled ||
		!p.Whiteouts.Enabled || p.Tmpfiles.Configs[0] != "acme.conf" || len(p.Tmpfiles.Commands) != 0 || p.MachineID.Blank != prepare.BlankMachineID {
		t.Errorf("merged config: %+v", p)
	}
	for in, want := range map[string]string{
		"[prepare.dedup]\ndefaults_dir = [\"/x\"]\n": "unknown key(s) prepare.dedup.defaults_dir",
		"[prepare.dedup]\netc = \"etc\"\n":           "prepare.dedup.etc",
		"[prepare.reset]\nmax_size = 0\n":            "prepare.reset.max_size",
	} {
		if _, err := ParseConfig(strings.NewReader(in), "boot.toml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

// TestPrepareToldWhenNoMergeFollows: with systemd.confext=0 the prepare
// step still runs (reset, whiteouts, machine-id) but is told that no merge
// follows, so its dedup removes nothing; otherwise it gets the merge's
// essential list.
func TestPrepareToldWhenNoMergeFollows(t *testing.T) {
	f := newFake()
	p := &fakePrep{f: f, res: &prepare.Result{}}
	run(t, f, Options{Stage: StagePre, Prep: p, Cmdline: Cmdline{ConfextOff: true}})
	if p.req.NoMerge == "" || !strings.Contains(p.req.NoMerge, "systemd.confext=0") {
		t.Errorf("confext=0: NoMerge = %q", p.req.NoMerge)
	}
	f = newFake()
	p = &fakePrep{f: f, res: &prepare.Result{}}
	run(t, f, Options{Stage: StagePre, Prep: p, Essential: []string{"00-x"}})
	if p.req.NoMerge != "" || strings.Join(p.req.Essential, ",") != "00-x" {
		t.Errorf("merge follows: %+v", p.req)
	}
}

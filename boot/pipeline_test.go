package boot

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// fakeEngines records every call in order and answers from its fields.
type fakeEngines struct {
	calls      []string
	merged     map[Class]bool
	results    map[Class]ExtResult
	errs       map[string]error // keyed by call name, e.g. "merge confext"
	masked     bool
	linkState  LinkState
	selChanges int
	lastReq    map[Class]ExtRequest
	rerecord   RerecordResult
}

func newFake() *fakeEngines {
	return &fakeEngines{merged: map[Class]bool{}, results: map[Class]ExtResult{}, errs: map[string]error{}, lastReq: map[Class]ExtRequest{}}
}

func (f *fakeEngines) rec(name string) error { f.calls = append(f.calls, name); return f.errs[name] }

func (f *fakeEngines) Merged(_ context.Context, _ string, c Class) (bool, error) {
	return f.merged[c], f.rec("status " + string(c))
}

func (f *fakeEngines) Merge(_ context.Context, r ExtRequest) (ExtResult, error) {
	f.lastReq[r.Class] = r
	if err := f.rec("merge " + string(r.Class)); err != nil {
		return ExtResult{}, err
	}
	f.merged[r.Class] = true
	return f.results[r.Class], nil
}

func (f *fakeEngines) Refresh(_ context.Context, r ExtRequest) (ExtResult, error) {
	f.lastReq[r.Class] = r
	if err := f.rec("refresh " + string(r.Class)); err != nil {
		return ExtResult{}, err
	}
	f.merged[r.Class] = true
	return f.results[r.Class], nil
}

func (f *fakeEngines) Rerecord(_ context.Context, r ExtRequest) (RerecordResult, error) {
	if err := f.rec("rerecord " + string(r.Class)); err != nil {
		return RerecordResult{}, err
	}
	return f.rerecord, nil
}

func (f *fakeEngines) Select(_ context.Context, _ string, dry bool) (SelectResult, error) {
	name := "select"
	if dry {
		name = "select dry-run"
	}
	return SelectResult{Changes: f.selChanges}, f.rec(name)
}

func (f *fakeEngines) EnsureMutableLink(_ string, dry bool) (LinkState, error) {
	name := "link"
	if dry {
		name = "link dry-run"
	}
	return f.linkState, f.rec(name)
}

func (f *fakeEngines) SysextMasked(string) (bool, error) { return f.masked, f.rec("masked?") }

func run(t *testing.T, f *fakeEngines, o Options) (*Summary, error, string) {
	t.Helper()
	var buf bytes.Buffer
	o.Root = "/sysroot"
	o.Ext, o.Sel, o.RootOps = f, f, f
	o.Log = oplog.New(oplog.WriterSink{W: &buf})
	tick := time.Unix(0, 0)
	o.Now = func() time.Time { tick = tick.Add(21 * time.Millisecond); return tick }
	s, err := Run(context.Background(), o)
	return s, err, buf.String()
}

func TestPreOrderAndSummary(t *testing.T) {
	f := newFake()
	f.results[Confext] = ExtResult{Merged: []string{"00-flatcar-default", "50-user"}}
	_, err, log := run(t, f, Options{Stage: StagePre})
	if err != nil {
		t.Fatal(err)
	}
	want := "link,status confext,merge confext"
	if got := strings.Join(f.calls, ","); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	if r := f.lastReq[Confext]; r.DefaultMutable != "auto" || r.Mutable != "" || strings.Join(r.Essential, ",") != "00-*default*" {
		t.Errorf("request = %+v", r)
	}
	re := regexp.MustCompile(`(?m)^ext-setup-root: stage pre finished in 21ms \(mutable link: created, confext: 2 merged, 0 skipped\)$`)
	if !re.MatchString(log) {
		t.Errorf("summary line missing:\n%s", log)
	}
	if !strings.Contains(log, "[started]  ensure symlink /sysroot/var/lib/extensions.mutable/etc -> /etc") {
		t.Errorf("no op line for the link:\n%s", log)
	}
}

func TestPreRerunRefreshes(t *testing.T) {
	f := newFake()
	f.merged[Confext] = true
	f.linkState = LinkPresent
	f.results[Confext] = ExtResult{Merged: []string{"00-flatcar-default"}, Unchanged: true}
	s, err, _ := run(t, f, Options{Stage: StagePre})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.calls, ","); got != "link,status confext,refresh confext" {
		t.Errorf("calls = %s", got)
	}
	if !strings.Contains(s.String(), "confext: 1 merged, 0 skipped, unchanged") {
		t.Errorf("summary = %s", s)
	}
}

func TestPostOrder(t *testing.T) {
	f := newFake()
	f.merged[Confext] = true
	f.selChanges = 3
	f.results[Sysext] = ExtResult{Merged: []string{"oem-qemu"}, Skipped: []Skip{{"broken", "not a squashfs"}}}
	s, err, log := run(t, f, Options{Stage: StagePost})
	if err != nil {
		t.Fatal(err)
	}
	want := "select,status confext,refresh confext,masked?,status sysext,merge sysext,status confext,refresh confext,rerecord sysext"
	if got := strings.Join(f.calls, ","); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	if f.lastReq[Sysext].Mutable != "" || f.lastReq[Sysext].DefaultMutable != "" {
		t.Errorf("sysext mutable mode forced: %+v", f.lastReq[Sysext])
	}
	if !strings.Contains(s.String(), "(abslots: 3 changes, confext: 0 merged, 0 skipped, sysext: 1 merged, 1 skipped, confext after sysext: 0 merged, 0 skipped, sysext record: kept)") {
		t.Errorf("summary = %s", s)
	}
	_ = log // the engine itself logs each skipped image with its file and rule
}

// TestPostRerecordsSysextAfterEtcReplaced: when the confext refresh after
// the sysext merge replaced /etc, the sysext record is corrected (the
// engine decides whether it can be); an unchanged final refresh needs no
// correction, and a failed correction is only logged.
func TestPostRerecordsSysextAfterEtcReplaced(t *testing.T) {
	f := newFake()
	f.merged[Confext] = true
	f.results[Sysext] = ExtResult{Merged: []string{"flatcar-zfs"}}
	f.rerecord = RerecordResult{Rewritten: true}
	s, err, _ := run(t, f, Options{Stage: StagePost})
	if err != nil {
		t.Fatal(err)
	}
	want := "select,status confext,refresh confext,masked?,status sysext,merge sysext,status confext,refresh confext,rerecord sysext"
	if got := strings.Join(f.calls, ","); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
	if !strings.HasSuffix(s.String(), "confext after sysext: 0 merged, 0 skipped, sysext record: updated)") {
		t.Errorf("summary = %s", s)
	}

	f = newFake()
	f.merged[Confext] = true
	f.results[Sysext] = ExtResult{Merged: []string{"flatcar-zfs"}}
	f.errs["rerecord sysext"] = errors.New("boom")
	s, err, log := run(t, f, Options{Stage: StagePost})
	if err != nil {
		t.Fatalf("a failed record correction failed the stage: %v", err)
	}
	if !strings.Contains(s.String(), "sysext record: not updated") || !strings.Contains(log, "boom") {
		t.Errorf("summary = %s\n%s", s, log)
	}

	f = newFake()
	f.merged[Confext] = true
	f.results[Confext] = ExtResult{Unchanged: true}
	f.results[Sysext] = ExtResult{Merged: []string{"oem-qemu"}}
	if _, err, _ := run(t, f, Options{Stage: StagePost}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(f.calls, ","), "rerecord") {
		t.Errorf("rerecord after an unchanged confext refresh: %s", strings.Join(f.calls, ","))
	}
}

func TestPostNoFinalRefreshWhenSysextUnchanged(t *testing.T) {
	f := newFake()
	f.merged[Confext], f.merged[Sysext] = true, true
	f.results[Sysext] = ExtResult{Merged: []string{"a"}, Unchanged: true}
	if _, err, _ := run(t, f, Options{Stage: StagePost}); err != nil {
		t.Fatal(err)
	}
	want := "select,status confext,refresh confext,masked?,status sysext,refresh sysext"
	if got := strings.Join(f.calls, ","); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
}

func TestPostSysextMaskedOrDisabled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		masked bool
		cl     Cmdline
		note   string
	}{
		{"masked", true, Cmdline{}, "sysext: masked"},
		{"cmdline", false, Cmdline{SysextOff: true}, "sysext: disabled by systemd.sysext=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.masked = tc.masked
			s, err, _ := run(t, f, Options{Stage: StagePost, Cmdline: tc.cl})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range f.calls {
				if strings.HasSuffix(c, " sysext") {
					t.Errorf("sysext touched: %v", f.calls)
				}
			}
			if !strings.Contains(s.String(), tc.note) {
				t.Errorf("summary = %s", s)
			}
		})
	}
}

func TestCmdlineSwitches(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stage Stage
		cl    Cmdline
		calls string
	}{
		{"pre off", StagePre, Cmdline{PreOff: true}, ""},
		{"post off", StagePost, Cmdline{PostOff: true}, ""},
		{"confext off pre", StagePre, Cmdline{ConfextOff: true}, ""},
		{"confext off post", StagePost, Cmdline{ConfextOff: true}, "select,masked?,status sysext,merge sysext"},
		{"sysext off post", StagePost, Cmdline{SysextOff: true}, "select,status confext,link,merge confext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			_, err, _ := run(t, f, Options{Stage: tc.stage, Cmdline: tc.cl})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(f.calls, ","); got != tc.calls {
				t.Errorf("calls = %q, want %q", got, tc.calls)
			}
		})
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	for _, st := range []Stage{StagePre, StagePost} {
		f := newFake()
		_, err, log := run(t, f, Options{Stage: st, DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range f.calls {
			if strings.HasPrefix(c, "merge") || strings.HasPrefix(c, "refresh") || c == "link" || c == "select" {
				t.Errorf("%s: side effect %q in dry run (calls %v)", st, c, f.calls)
			}
		}
		if !strings.Contains(log, "dry run: would merge confexts") {
			t.Errorf("%s: no dry-run line:\n%s", st, log)
		}
	}
}

func TestEssentialPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		essential []string
		cl        Cmdline
		res       ExtResult
		wantErr   string
	}{
		{"ordinary skip", nil, Cmdline{}, ExtResult{Merged: []string{"00-flatcar-default"}, Skipped: []Skip{{"50-user", "bad"}}}, ""},
		{"default skipped", nil, Cmdline{}, ExtResult{Skipped: []Skip{{"00-flatcar-default", "wrong ID"}}}, `essential confext 00-flatcar-default (matches "00-*default*") not merged: wrong ID`},
		{"no default at all", nil, Cmdline{}, ExtResult{Merged: []string{"50-user"}}, ""},
		{"literal missing", []string{"00-vendor"}, Cmdline{}, ExtResult{}, `essential confext "00-vendor" not found`},
		{"cmdline clears", nil, Cmdline{Essential: []string{}}, ExtResult{Skipped: []Skip{{"00-flatcar-default", "x"}}}, ""},
		{"cmdline overrides", []string{"00-vendor"}, Cmdline{Essential: []string{"10-*"}}, ExtResult{Skipped: []Skip{{"10-site", "x"}}}, "essential confext 10-site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.results[Confext] = tc.res
			_, err, log := run(t, f, Options{Stage: StagePre, Essential: tc.essential, Cmdline: tc.cl})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ee *EssentialError
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &ee) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if !strings.Contains(log, "stage pre failed in") {
				t.Errorf("no failed summary:\n%s", log)
			}
		})
	}
}

func TestFailurePolicy(t *testing.T) {
	boom := errors.New("boom")
	t.Run("confext merge error fails pre", func(t *testing.T) {
		f := newFake()
		f.errs["merge confext"] = boom
		if _, err, _ := run(t, f, Options{Stage: StagePre}); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("link error fails pre before merging", func(t *testing.T) {
		f := newFake()
		f.errs["link"] = boom
		if _, err, _ := run(t, f, Options{Stage: StagePre}); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if len(f.calls) != 1 {
			t.Errorf("went on after link failure: %v", f.calls)
		}
	})
	t.Run("sysext error does not fail post", func(t *testing.T) {
		f := newFake()
		f.errs["merge sysext"] = boom
		s, err, log := run(t, f, Options{Stage: StagePost})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log, "continuing boot without system extensions") || !strings.Contains(s.String(), "sysext: failed") {
			t.Errorf("log:\n%s\nsummary %s", log, s)
		}
	})
	t.Run("essential sysext error fails post", func(t *testing.T) {
		f := newFake()
		f.errs["merge sysext"] = boom
		if _, err, _ := run(t, f, Options{Stage: StagePost, SysextEssential: []string{"oem-*"}}); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("selection error fails post after the merges", func(t *testing.T) {
		f := newFake()
		f.errs["select"] = boom
		_, err, _ := run(t, f, Options{Stage: StagePost})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if got := strings.Join(f.calls, ","); !strings.Contains(got, "merge sysext") {
			t.Errorf("calls = %s", got)
		}
	})
	t.Run("unknown stage", func(t *testing.T) {
		if _, err, _ := run(t, newFake(), Options{Stage: "middle"}); err == nil {
			t.Fatal("no error")
		}
	})
}

// TestRunRefusesOldKernel: below the minimum kernel a stage fails with one
// clear error before any change (the engines are never called).
func TestRunRefusesOldKernel(t *testing.T) {
	for _, st := range []Stage{StagePre, StagePost} {
		s, err := Run(context.Background(), Options{Stage: st, Root: t.TempDir(), Kernel: mount.Expected([2]int{5, 15})})
		if !errors.Is(err, mount.ErrKernelTooOld) || s.Confext != nil || s.Links != nil || !strings.Contains(s.String(), "5.15") {
			t.Errorf("%s on 5.15: %v, summary %s", st, err, s)
		}
	}
}

// TestDefaultConfextRule (issue 18 item 8): Flatcar requires its default
// confext by name; elsewhere a merge without any default confext says so
// in one line and goes on; configured patterns are left alone.
func TestDefaultConfextRule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        Options
		merged   []string
		wantErr  string
		wantNote bool
	}{
		{"flatcar without default", Options{Flatcar: true}, []string{"50-user"}, `essential confext "00-flatcar-default" not found`, false},
		{"flatcar with default", Options{Flatcar: true}, []string{"00-flatcar-default", "50-user"}, "", false},
		{"other OS without default", Options{}, []string{"50-user"}, "", true},
		{"other OS with default", Options{}, []string{"00-vendor-default"}, "", false},
		{"configured", Options{Essential: []string{"00-*default*"}}, []string{"50-user"}, "", false},
		{"cmdline clears", Options{Flatcar: true, Cmdline: Cmdline{Essential: []string{}}}, []string{"50-user"}, "", false},
	} {
		f := newFake()
		f.results[Confext] = ExtResult{Merged: tc.merged}
		tc.o.Stage = StagePre
		_, err, log := run(t, f, tc.o)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.wantErr)
		}
		if got := strings.Count(log, "no default confext found"); got != map[bool]int{true: 1, false: 0}[tc.wantNote] {
			t.Errorf("%s: %d notes:\n%s", tc.name, got, log)
		}
	}
}

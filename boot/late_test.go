package boot

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

func TestParseSystemdVersion(t *testing.T) {
	for in, want := range map[string]int{
		"systemd 262 (262.1-1)\n+PAM +AUDIT\n": 262,
		"systemd 259~rc1 (259~rc1-2)":          0,
		"systemd 252.5":                        252,
		"":                                     0,
		"udev 255":                             0,
	} {
		got, err := ParseSystemdVersion(strings.NewReader(in))
		if (err != nil) != (want == 0) || got != want {
			t.Errorf("%q: %d %v, want %d", in, got, err, want)
		}
	}
}

func TestRunLate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stage    Stage
		version  int
		verErr   error
		wantExec string
		wantCall string
	}{
		// Issue 8 item 7: ours on every systemd version, also >= 260 where
		// the stock refresh skips an unchanged merge but unmerges before
		// merging a changed one.
		{"262 confext ours", StageLateConfext, 262, nil, "", "status confext,refresh confext"},
		{"260 sysext ours", StageLateSysext, 260, nil, "", "status sysext,refresh sysext"},
		{"258 confext ours", StageLateConfext, 258, nil, "", "status confext,refresh confext"},
		{"252 sysext ours", StageLateSysext, 252, nil, "", "status sysext,refresh sysext"},
		{"unknown version ours", StageLateConfext, 0, errors.New("no tool"), "", "status confext,refresh confext"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.results[Confext] = ExtResult{Unchanged: tc.name == "unknown version ours"}
			reloads := 0
			var execd string
			var buf bytes.Buffer
			err := RunLate(context.Background(), LateOptions{
				Stage: tc.stage, Root: "/", Ext: f, Log: oplog.New(oplog.WriterSink{W: &buf}),
				SystemdVersion: func(tool string) (int, error) { return tc.version, tc.verErr },
				ExecStock:      func(argv []string) error { execd = strings.Join(argv, " "); return nil },
				Reload:         func() error { reloads++; return nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			if execd != tc.wantExec || strings.Join(f.calls, ",") != tc.wantCall {
				t.Errorf("exec %q calls %v\n%s", execd, f.calls, buf.String())
			}
			wantReloads := 0
			if tc.wantCall != "" && tc.name != "unknown version ours" {
				wantReloads = 1 // changed merges reload, unchanged ones do not
			}
			if reloads != wantReloads {
				t.Errorf("%d reloads, want %d", reloads, wantReloads)
			}
			if tc.wantCall == "status confext,refresh confext" && f.lastReq[Confext].DefaultMutable != "auto" {
				t.Errorf("late confext refresh must keep mutable=auto like the initrd merge: %+v", f.lastReq[Confext])
			}
			if tc.wantCall != "" && !strings.Contains(buf.String(), "stage "+string(tc.stage)+" finished in ") {
				t.Errorf("no summary:\n%s", buf.String())
			}
		})
	}
}

// TestRunLateMode: auto (the default) and ours run ext-setup-root's refresh
// whatever the systemd version, stock hands over to the stock tool, each
// naming its reason in the log; a wrong value falls back to auto with a
// warning.
func TestRunLateMode(t *testing.T) {
	for _, tc := range []struct {
		mode     LateRefresh
		version  int
		wantExec string
		wantCall string
		wantLog  string
	}{
		{LateOurs, 262, "", "status confext,refresh confext", "ext-setup-root.late-refresh=ours on the kernel command line: using ext-setup-root's atomic refresh"},
		{LateStock, 252, "systemd-confext refresh", "", "ext-setup-root.late-refresh=stock on the kernel command line: handing over to systemd-confext refresh"},
		{LateAuto, 262, "", "status confext,refresh confext", "using ext-setup-root's atomic refresh instead of systemd-confext refresh (systemd 262)"},
		{LateAuto, 252, "", "status confext,refresh confext", "(systemd 252)"},
		{"", 263, "", "status confext,refresh confext", "(systemd 263)"},
		{"bogus", 262, "", "status confext,refresh confext", "ext-setup-root.late-refresh=bogus on the kernel command line is not auto, ours or stock; using auto"},
	} {
		t.Run(string(tc.mode)+"-"+strconv.Itoa(tc.version), func(t *testing.T) {
			f := newFake()
			f.merged[Confext] = true // a merge from the initrd is in place
			var execd string
			var buf bytes.Buffer
			asked := false
			err := RunLate(context.Background(), LateOptions{
				Stage: StageLateConfext, Root: "/", Ext: f, Log: oplog.New(oplog.WriterSink{W: &buf}), Mode: tc.mode,
				SystemdVersion: func(string) (int, error) { asked = true; return tc.version, nil },
				ExecStock:      func(argv []string) error { execd = strings.Join(argv, " "); return nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			if execd != tc.wantExec || strings.Join(f.calls, ",") != tc.wantCall {
				t.Errorf("exec %q calls %v\n%s", execd, f.calls, buf.String())
			}
			if !strings.Contains(buf.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, buf.String())
			}
			if forced := tc.mode == LateOurs || tc.mode == LateStock; forced && asked {
				t.Errorf("%s asked for the systemd version; the switch must not depend on it", tc.mode)
			}
			if tc.wantCall != "" && !strings.Contains(buf.String(), "confext merge replaced atomically") {
				t.Errorf("a changed refresh must log that it replaced the merge:\n%s", buf.String())
			}
		})
	}
	// An unchanged merge logs the skip, not a replacement.
	f := newFake()
	f.results[Confext] = ExtResult{Unchanged: true}
	var buf bytes.Buffer
	if err := RunLate(context.Background(), LateOptions{
		Stage: StageLateConfext, Root: "/", Ext: f, Log: oplog.New(oplog.WriterSink{W: &buf}), Mode: LateOurs,
		ExecStock: func([]string) error { t.Error("exec"); return nil },
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "refresh skipped") || strings.Contains(buf.String(), "replaced") {
		t.Errorf("unchanged:\n%s", buf.String())
	}
}

// TestRunLateKillSwitchAndDryRun (issue 18 item 2): the late stages honour
// systemd.confext= / systemd.sysext= in every boolean spelling, the way
// systemd-confext.service's own tool does, and the dry run; nothing
// reaches the engines and the stock tool is not execed either.
func TestRunLateKillSwitchAndDryRun(t *testing.T) {
	for _, tc := range []struct {
		stage   Stage
		cmdline string
		wantLog string
	}{
		{StageLateConfext, "systemd.confext=0", "disabled by systemd.confext=0"},
		{StageLateConfext, "systemd.confext=no", "disabled by systemd.confext=0"},
		{StageLateConfext, "systemd.confext=off ext-setup-root.late-refresh=stock", "disabled by systemd.confext=0"},
		{StageLateConfext, "systemd.confext=false", "disabled by systemd.confext=0"},
		{StageLateSysext, "systemd.sysext=0", "disabled by systemd.sysext=0"},
		{StageLateSysext, "systemd.sysext=n", "disabled by systemd.sysext=0"},
		{StageLateConfext, "rd.systemd.confext=0 ext-setup-root.dry-run", "dry run: would refresh confexts in /"},
		{StageLateSysext, "ext-setup-root.dry-run ext-setup-root.late-refresh=stock", "dry run: would refresh sysexts in /"},
	} {
		cl, err := ParseCmdline(strings.NewReader(tc.cmdline))
		if err != nil {
			t.Fatal(err)
		}
		f := newFake()
		var buf bytes.Buffer
		err = RunLate(context.Background(), LateOptions{
			Stage: tc.stage, Root: "/", Ext: f, Log: oplog.New(oplog.WriterSink{W: &buf}),
			Mode: cl.LateRefresh, Cmdline: cl, DryRun: cl.DryRun,
			ExecStock: func(argv []string) error { t.Errorf("%q: execed %v", tc.cmdline, argv); return nil },
			Reload:    func() error { t.Errorf("%q: reloaded", tc.cmdline); return nil },
		})
		if err != nil || len(f.calls) != 0 {
			t.Errorf("%q: err %v, engine calls %v", tc.cmdline, err, f.calls)
		}
		if !strings.Contains(buf.String(), tc.wantLog) || !strings.Contains(buf.String(), "stage "+string(tc.stage)+" finished in ") {
			t.Errorf("%q: log lacks %q or the summary:\n%s", tc.cmdline, tc.wantLog, buf.String())
		}
	}
}

// TestRunLateFirstMerge (issue 18 item 2): a late refresh with nothing
// merged before merges, and says so instead of "replaced atomically".
func TestRunLateFirstMerge(t *testing.T) {
	f := newFake()
	f.results[Confext] = ExtResult{Merged: []string{"50-user"}}
	var buf bytes.Buffer
	if err := RunLate(context.Background(), LateOptions{
		Stage: StageLateConfext, Root: "/", Ext: f, Log: oplog.New(oplog.WriterSink{W: &buf}),
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "replaced atomically") || !strings.Contains(buf.String(), "confext merged (nothing was merged before): 1 merged") {
		t.Errorf("first merge wording:\n%s", buf.String())
	}
}

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
		{"262 confext ours", StageLateConfext, 262, nil, "", "refresh confext"},
		{"260 sysext ours", StageLateSysext, 260, nil, "", "refresh sysext"},
		{"258 confext ours", StageLateConfext, 258, nil, "", "refresh confext"},
		{"252 sysext ours", StageLateSysext, 252, nil, "", "refresh sysext"},
		{"unknown version ours", StageLateConfext, 0, errors.New("no tool"), "", "refresh confext"},
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
			if tc.wantCall == "refresh confext" && f.lastReq[Confext].DefaultMutable != "auto" {
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
		{LateOurs, 262, "", "refresh confext", "ext-setup-root.late-refresh=ours on the kernel command line: using ext-setup-root's atomic refresh"},
		{LateStock, 252, "systemd-confext refresh", "", "ext-setup-root.late-refresh=stock on the kernel command line: handing over to systemd-confext refresh"},
		{LateAuto, 262, "", "refresh confext", "using ext-setup-root's atomic refresh instead of systemd-confext refresh (systemd 262)"},
		{LateAuto, 252, "", "refresh confext", "(systemd 252)"},
		{"", 263, "", "refresh confext", "(systemd 263)"},
		{"bogus", 262, "", "refresh confext", "ext-setup-root.late-refresh=bogus on the kernel command line is not auto, ours or stock; using auto"},
	} {
		t.Run(string(tc.mode)+"-"+strconv.Itoa(tc.version), func(t *testing.T) {
			f := newFake()
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

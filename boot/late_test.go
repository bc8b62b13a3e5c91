package boot

import (
	"bytes"
	"context"
	"errors"
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
		{"262 confext execs stock", StageLateConfext, 262, nil, "systemd-confext refresh", ""},
		{"260 sysext execs stock", StageLateSysext, 260, nil, "systemd-sysext refresh", ""},
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

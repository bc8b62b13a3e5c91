package boot

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Cmdline
	}{
		{"", Cmdline{}},
		{"root=/dev/vda quiet\n", Cmdline{}},
		{"systemd.confext=0 systemd.sysext=no", Cmdline{ConfextOff: true, SysextOff: true}},
		// Issue 18 item 3: each key on its own, as systemd 262's units
		// read them; rd. reaches only the initrd's own hierarchies.
		{"rd.systemd.sysext=0 systemd.sysext=1", Cmdline{InitrdSysextOff: true}},
		{"systemd.confext=0 rd.systemd.confext=1", Cmdline{ConfextOff: true}},
		{"rd.systemd.confext=0", Cmdline{InitrdConfextOff: true}},
		{"systemd.sysext=off rd.systemd.sysext=1", Cmdline{SysextOff: true}},
		// The unit's ConditionKernelCommandLine=!systemd.confext=0 fails on
		// any such word, even when a later one says 1.
		{"systemd.confext=0 systemd.confext=1", Cmdline{ConfextOff: true}},
		// The tool's own check: last value, any boolean spelling.
		{"systemd.confext=1 systemd.confext=FALSE", Cmdline{ConfextOff: true}},
		{"systemd.confext=no systemd.confext=yes", Cmdline{}},
		{"systemd.sysext", Cmdline{}},
		{"ext-setup-root.debug ext-setup-root.dry-run", Cmdline{Debug: true, DryRun: true}},
		{"ext-setup-root.debug=0 ext-setup-root.dry-run=yes", Cmdline{DryRun: true}},
		{"ext-setup-root.stage.pre=0 ext-setup-root.stage.post=off", Cmdline{PreOff: true, PostOff: true}},
		{"ext-setup-root.stage.pre=0 ext-setup-root.stage.pre=1", Cmdline{}},
		{`ext-setup-root.essential="00-vendor, 10-*" x`, Cmdline{Essential: []string{"00-vendor", "10-*"}}},
		{"ext-setup-root.essential=", Cmdline{Essential: []string{}}},
		{`"systemd.sysext=0"`, Cmdline{SysextOff: true}},
		{"ext-setup-root.late-refresh=ours", Cmdline{LateRefresh: LateOurs}},
		{"ext-setup-root.late-refresh=ours ext-setup-root.late_refresh=stock", Cmdline{LateRefresh: LateStock}},
		{"ext-setup-root.late-refresh=bogus", Cmdline{LateRefresh: "bogus"}},
		// One parser for the whole binary: abslots and boot agree that
		// '-' and '_' are alike in every key (issue 8 item 8).
		{"ext_setup_root.dry_run ext_setup_root.debug=1 ext_setup_root.stage.pre=0", Cmdline{DryRun: true, Debug: true, PreOff: true}},
		{"ext-setup-root.essential", Cmdline{Essential: []string{}}},
		// An unreadable boolean keeps the default and is reported.
		{"ext-setup-root.stage.pre=bogus", Cmdline{Problems: []string{"kernel command line: ext-setup-root.stage.pre=bogus is not a boolean (1/yes/true/on or 0/no/false/off); using true"}}},
	} {
		got, err := ParseCmdline(strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

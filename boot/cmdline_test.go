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
		{"rd.systemd.sysext=0 systemd.sysext=1", Cmdline{}},
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

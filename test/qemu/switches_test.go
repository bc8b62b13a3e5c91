package qemu

import (
	"strings"
	"testing"
)

// TestQEMUSwitches boots with the kernel command line switches of issue 18
// items 1 and 2 on a real systemd 262 system:
//   - ext-setup-root.stage.pre=0: the post stage makes the first merge with
//     the mutable link in place, so /etc is writable for the whole boot
//     and the booted refresh skips (before, /etc stayed read-only);
//   - systemd.confext=no: no stage merges /etc, the booted late stage
//     included (before, its drop-in merged: the stock unit's condition only
//     matches the literal systemd.confext=0).
func TestQEMUSwitches(t *testing.T) {
	in := RequireInputs(t)
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: RootTree(t, in), OEM: OEMTree(t)})

	rep := m.Boot("A", "ext-setup-root.stage.pre=0")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	if st := rep.Stages()["pre"]; !strings.Contains(st.Line, "disabled by ext-setup-root.stage.pre=0") {
		t.Errorf("stage.pre=0: pre summary %q", st.Line)
	}
	if !rep.AnyContains("etc_mount", "overlay") || rep.Get("etc_writable") != "yes" {
		t.Errorf("stage.pre=0: /etc mount %q, writable %q", rep.All("etc_mount"), rep.Get("etc_writable"))
	}
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext version="+VersionA) {
		t.Errorf("stage.pre=0: default confext file not in /etc: %q", rep.All("file"))
	}
	RequireRefreshSkipped(t, rep, 1, "confext", "/etc")

	rep = m.Boot("A", "systemd.confext=no")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	st := rep.Stages()
	if !strings.Contains(st["pre"].Line, "disabled by systemd.confext=0") {
		t.Errorf("systemd.confext=no: pre summary %q", st["pre"].Line)
	}
	if !strings.Contains(st["late-confext"].Line, "disabled by systemd.confext=0") {
		t.Errorf("systemd.confext=no: late-confext summary %q", st["late-confext"].Line)
	}
	if rep.AnyContains("etc_mount", "overlay") {
		t.Errorf("systemd.confext=no: /etc merged: %q", rep.All("etc_mount"))
	}
}

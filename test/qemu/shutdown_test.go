package qemu

import "testing"

// stockDropinHook replaces ext-setup-root's systemd-confext drop-in by an
// empty one of the same name in /etc for the next boot, which restores the
// stock unit (refresh = unmerge+merge, ExecStop = unmerge).
const stockDropinHook = `#!/bin/sh
mkdir -p /etc/systemd/system/systemd-confext.service.d
: >/etc/systemd/system/systemd-confext.service.d/10-ext-setup-root.conf
sync
`

// TestQEMUCleanShutdown: with ext-setup-root's host drop-ins, a unit that
// stops late in a clean shutdown still sees the default confext's files in
// /etc (boot 1). As the control, boot 2 runs the stock systemd-confext
// unit (the drop-in masked by an empty /etc override): its ExecStop unmerge
// pulls /etc out from under the same unit.
func TestQEMUCleanShutdown(t *testing.T) {
	in := RequireInputs(t)
	root := RootTree(t, in)
	symlink(t, root, "etc/systemd/system/sysinit.target.wants/extsr-late-stop.service", "/usr/lib/systemd/system/extsr-late-stop.service")
	writeFile(t, root, "etc/extsr/check.d/90-stock-dropin", stockDropinHook, 0o755)
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: OEMTree(t)})

	rep := m.Boot("A", "extsr.clean")
	RequireStagesFinished(t, rep)
	if got := rep.Get("late_stop_default_conf"); got != "present" {
		t.Errorf("with the drop-ins, the late-stopping unit saw the default confext file %q at shutdown, want present", got)
	}
	rep = m.Boot("A", "extsr.clean")
	if got := rep.Get("late_stop_default_conf"); got != "missing" {
		t.Errorf("control with the stock unit: late-stopping unit saw %q, want missing (the stock unmerge); if this passes as present, the control shows nothing", got)
	}
}

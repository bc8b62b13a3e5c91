package qemu

import (
	"strings"
	"testing"
)

// persistHook runs in the guest reporter: it prints what the previous boot
// wrote to /etc/extsr/persist, then writes the current boot id there.
const persistHook = `#!/bin/sh
printf 'EXTSR-RESULT persist_before=%s\n' "$(cat /etc/extsr/persist 2>/dev/null || echo none)"
cat /proc/sys/kernel/random/boot_id >/etc/extsr/persist && sync /etc/extsr/persist
printf 'EXTSR-RESULT persist_written=%s\n' "$(cat /etc/extsr/persist)"
`

// TestQEMUFirstBoot: the default confext is merged in the initrd (mutable,
// /etc writable), systemd-confext.service in the booted system skips its
// refresh, and a file written to /etc survives a reboot of the same disk.
func TestQEMUFirstBoot(t *testing.T) {
	in := RequireInputs(t)
	root := RootTree(t, in)
	writeFile(t, root, "etc/extsr/check.d/10-persist", persistHook, 0o755)
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: OEMTree(t)})

	for boot := 1; boot <= 2; boot++ {
		rep := m.Boot("A", "")
		RequireStagesFinished(t, rep)
		RequireNoFailedUnits(t, rep)
		// The initrd merged the default confext; /etc is a mutable overlay.
		if !rep.AnyContains("etc_mount", "overlay") {
			t.Errorf("boot %d: /etc is not an overlay: %q", boot, rep.All("etc_mount"))
		}
		if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext version="+VersionA) {
			t.Errorf("boot %d: default confext file not in /etc: %q", boot, rep.All("file"))
		}
		if !rep.AnyContains("confext_meta_confexts", "00-flatcar-default") {
			t.Errorf("boot %d: /etc/.systemd-confext/confexts does not name the default confext: %q", boot, rep.All("confext_meta_confexts"))
		}
		if rep.Get("etc_writable") != "yes" {
			t.Errorf("boot %d: /etc not writable", boot)
		}
		// The booted systemd-confext recognised the merge and skipped.
		RequireRefreshSkipped(t, rep, boot, "confext", "/etc")
		if !strings.Contains(rep.Get("confext_status"), "00-flatcar-default") {
			t.Errorf("boot %d: systemd-confext status does not list the default confext: %s", boot, rep.Get("confext_status"))
		}
		prev, written := rep.Get("persist_before"), rep.Get("persist_written")
		if written == "" || written == "none" {
			t.Errorf("boot %d: writing /etc/extsr/persist failed", boot)
		}
		switch boot {
		case 1:
			if prev != "none" {
				t.Errorf("boot 1: /etc/extsr/persist already present: %q", prev)
			}
		case 2:
			if prev != firstWritten {
				t.Errorf("boot 2: /etc/extsr/persist = %q, want what boot 1 wrote (%q)", prev, firstWritten)
			}
		}
		firstWritten = written
	}
}

// firstWritten carries boot 1's persist value to boot 2.
var firstWritten string

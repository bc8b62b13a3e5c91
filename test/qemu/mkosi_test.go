package qemu

import (
	"strings"
	"testing"
)

// checkMkosiOursBoot checks the boot of the mkosi example image (make
// mkosi-image) with ext-setup-root's UKI, booted the way a machine boots
// it: OVMF, systemd-boot, the UKI, mkosi's systemd initrd with
// ext-setup-root's stages, switch-root, multi-user.target. The test
// profile's reporter says what ran: both stages finished, systemd's own
// sysroot merge did not run, /etc is the writable merge of the signed
// default confext (its file is there, a dm-verity device serves it), the
// system is running with no failed units. TestQEMUMkosiMeasured runs it on
// its measured boot of that UKI (one boot answers both questions).
func checkMkosiOursBoot(t *testing.T, m *MkosiImage, rep *Report) {
	t.Helper()
	if got := rep.Get("loader_entry"); got != m.Entries[MkosiOurs] {
		t.Errorf("systemd-boot started entry %q, want the UKI %q", got, m.Entries[MkosiOurs])
	}
	RequireStagesFinished(t, rep)
	if j := rep.All("sysroot_journal"); len(j) > 0 && !strings.Contains(strings.Join(j, "\n"), "No entries") {
		t.Errorf("systemd-confext-sysroot.service ran next to our stages (it must be masked): %q", j)
	}
	const want = "/etc/extsr-mkosi/default.conf: from-default-confext mkosi"
	if !rep.AnyContains("file", want) {
		t.Errorf("the default confext's file is not in /etc: want %q, got %q", want, rep.All("file"))
	}
	if rep.Get("etc_writable") != "yes" {
		t.Errorf("/etc is not writable (the mutable merge): etc_writable=%q, mounts %q", rep.Get("etc_writable"), rep.All("etc_mount"))
	}
	if !rep.AnyContains("etc_mount", "overlay") {
		t.Errorf("/etc is not an overlay: %q", rep.All("etc_mount"))
	}
	if !rep.AnyContains("dm", "-verity") {
		t.Errorf("no dm-verity device serves the signed default confext: %q", rep.All("dm"))
	}
	if st := rep.Get("system_state"); st != "running" {
		t.Errorf("systemctl is-system-running: %q, want running", st)
	}
	RequireNoFailedUnits(t, rep)
}

package qemu

import (
	"strings"
	"testing"
)

// TestQEMUBaselineStockDracut boots the test disk through a dracut initramfs
// WITHOUT our module: it validates the disk layout (USR-A on /usr read-only,
// ROOT read-write, OEM on /oem) independently of ext-setup-root, and gives the
// stock behaviour to compare with: systemd-confext.service merges the default
// confext in the booted system.
func TestQEMUBaselineStockDracut(t *testing.T) {
	in := RequireInputs(t)
	initrd := Initrd(t, in, false)
	root := RootTree(t, in)
	disk := Disk(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: OEMTree(t)})
	rep := Boot(t, in, BootSpec{Initrd: initrd, Disk: disk, Cmdline: Cmdline("A")})
	if !rep.Done {
		t.Fatalf("reporter did not finish; last console lines:\n%s", rep.Tail(60))
	}
	if got := rep.Get("usr_version"); got != VersionA {
		t.Errorf("usr_version = %q, want %s (slot A)", got, VersionA)
	}
	if !rep.AnyContains("usr_mount", "erofs") || !rep.AnyContains("usr_mount", "USR-A") && !rep.AnyContains("usr_mount", "/dev/vda3") {
		t.Errorf("/usr not the erofs USR-A partition: %q", rep.All("usr_mount"))
	}
	if !rep.AnyContains("oem_mount", "/dev/vda6") {
		t.Errorf("/oem not mounted from the OEM partition: %q", rep.All("oem_mount"))
	}
	if !rep.AnyContains("confext_journal", "Merged extensions into") {
		t.Errorf("stock systemd-confext should merge the default confext in the booted system; journal: %q", rep.All("confext_journal"))
	}
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext") {
		t.Errorf("default confext file not visible in /etc: %q", rep.All("file"))
	}
	if f := strings.Join(rep.All("failed"), "; "); f != "" {
		t.Logf("failed units: %s", f)
	}
}

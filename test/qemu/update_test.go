package qemu

import (
	"path/filepath"
	"testing"
)

// updateDisk stages a disk whose OEM partition and ROOT hold the OEM and
// flatcar-foo images of both slot versions, with the active-oem flag set:
// what the machine looks like after an update was downloaded.
func updateDisk(t *testing.T, in *Inputs) DiskSpec {
	root := RootTree(t, in)
	oem := OEMTree(t)
	writeFile(t, oem, "sysext/active-oem-"+OEMID, "", 0o644)
	writeFile(t, root, "etc/flatcar/enabled-sysext.conf", "# test\nfoo\n", 0o644)
	for _, v := range []string{VersionA, VersionB} {
		OEMSysext(v).Build(t, filepath.Join(oem, "sysext", "oem-"+OEMID+"-"+v+".raw"))
		FlatcarSysext("foo", v).Build(t, filepath.Join(root, "etc/flatcar/sysext", "flatcar-foo-"+v+".raw"))
	}
	return DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: oem}
}

// checkSlotImages checks what every boot of the update disk shows for
// /usr version v, whichever tool refreshes in the booted system: stages
// finished, no failed unit, links to v's images, both sysexts merged, the
// OEM service ran, /etc writable.
func checkSlotImages(t *testing.T, rep *Report, v string) {
	t.Helper()
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	if got := rep.Get("usr_version"); got != v {
		t.Errorf("/usr version %q, want %s", got, v)
	}
	RequireLink(t, rep, "oem-"+OEMID+".raw", "/oem/sysext/oem-"+OEMID+"-"+v+".raw")
	RequireLink(t, rep, "flatcar-foo.raw", "/etc/flatcar/sysext/flatcar-foo-"+v+".raw")
	for _, want := range []string{"oem-" + v, "foo-" + v} {
		if !rep.AnyContains("usr_ext", want) {
			t.Errorf("sysext content %s not in /usr/lib/extsr-ext: %q", want, rep.Get("usr_ext"))
		}
	}
	if got := rep.Get("oem_service"); got != "active ran" {
		t.Errorf("OEM sysext service: %q, want \"active ran\"", got)
	}
	if rep.Get("etc_writable") != "yes" {
		t.Errorf("/etc not writable")
	}
}

// checkSlot checks the facts every boot of the update disk must show for
// /usr version v: links to v's images, both sysexts merged, the OEM
// service (enabled by a .wants link inside the OEM sysext) ran.
func checkSlot(t *testing.T, rep *Report, boot int, v string) {
	t.Helper()
	checkSlotImages(t, rep, v)
	// The hand-off: the booted systemd-confext and systemd-sysext both
	// find the initrd's merges unchanged and skip. The Flatcar extension
	// lives in /etc/flatcar/sysext, inside the /etc overlay that the post
	// stage replaces after the sysext merge, so this also checks the
	// post stage's correction of the sysext record.
	RequireRefreshSkipped(t, rep, boot, "confext", "/etc")
	RequireRefreshSkipped(t, rep, boot, "sysext", "/usr")
}

// TestQEMUUpdateRollback boots slot A (the OEM image on the OEM partition
// gets its link; the OEM sysext is merged and the service it enables runs),
// then slot B with the new VERSION (links flip to the new images), then A
// again (rollback: links flip back).
func TestQEMUUpdateRollback(t *testing.T) {
	in := RequireInputs(t)
	m := NewMachine(t, in, updateDisk(t, in))
	for i, step := range []struct{ slot, version, what string }{
		{"A", VersionA, "first boot of slot A"},
		{"B", VersionB, "update: slot B"},
		{"A", VersionA, "rollback: slot A"},
	} {
		t.Logf("boot %d: %s", i+1, step.what)
		rep := m.Boot(step.slot, "")
		checkSlot(t, rep, i+1, step.version)
		if t.Failed() {
			t.Fatalf("%s failed; log %s", step.what, rep.LogPath)
		}
	}
}

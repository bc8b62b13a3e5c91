package qemu

import (
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
)

// legacyHook reports whether the OEM migration list's legacy file exists.
const legacyHook = `#!/bin/sh
if [ -e /etc/extsr-oem-legacy.conf ]; then v=present; else v=absent; fi
printf 'EXTSR-RESULT legacy=%s\n' "$v"
`

// oemRootCase stages Flatcar's case b after an update to slot B: the new
// OEM image on the root partition, the previous one on the OEM partition
// with the link pointing at it.
func oemRootCase(t *testing.T, in *Inputs, newImage Ext, oemMiB int, filler int) (DiskSpec, string, string) {
	root := RootTree(t, in)
	oem := OEMTree(t)
	writeFile(t, oem, "sysext/active-oem-"+OEMID, "", 0o644)
	oldName := "oem-" + OEMID + "-" + VersionA + ".raw"
	newName := "oem-" + OEMID + "-" + VersionB + ".raw"
	OEMSysext(VersionA).Build(t, filepath.Join(oem, "sysext", oldName))
	newImage.Build(t, filepath.Join(root, "etc/flatcar/oem-sysext", newName))
	symlink(t, root, "etc/extensions/oem-"+OEMID+".raw", "/oem/sysext/"+oldName)
	if filler > 0 {
		b := make([]byte, filler)
		rand.Read(b)
		writeFile(t, oem, "filler", string(b), 0o644)
	}
	return DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: oem, OEMMiB: oemMiB}, oldName, newName
}

// TestQEMUOEMMoveAndMigrate: booting slot B with the new OEM image on the
// root partition and the previous one on the OEM partition moves the old
// one to the root partition and the new one to the OEM partition, and
// re-points the link; the migrate flag deletes the listed legacy files
// once and is removed.
func TestQEMUOEMMoveAndMigrate(t *testing.T) {
	in := RequireInputs(t)
	spec, oldName, newName := oemRootCase(t, in, OEMSysext(VersionB), 0, 0)
	writeFile(t, spec.OEM, "sysext/migrate-oem-"+OEMID, "", 0o644)
	writeFile(t, spec.Root, "etc/extsr-oem-legacy.conf", "legacy OEM file\n", 0o644)
	writeFile(t, spec.Root, "etc/extsr/check.d/20-legacy", legacyHook, 0o755)
	m := NewMachine(t, in, spec)
	rep := m.Boot("B", "")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	RequireLink(t, rep, "oem-"+OEMID+".raw", "/oem/sysext/"+newName)
	if !rep.HasImage("/oem/sysext/" + newName) {
		t.Errorf("new image not moved to the OEM partition; images: %q", rep.All("image"))
	}
	if !rep.HasImage("/etc/flatcar/oem-sysext/" + oldName) {
		t.Errorf("previous image not moved to the root partition; images: %q", rep.All("image"))
	}
	if rep.HasImage("/etc/flatcar/oem-sysext/"+newName) || rep.HasImage("/oem/sysext/"+oldName) {
		t.Errorf("leftover copies after the moves; images: %q", rep.All("image"))
	}
	if rep.HasImage("/oem/sysext/migrate-oem-" + OEMID) {
		t.Errorf("migrate flag not removed")
	}
	if got := rep.Get("legacy"); got != "absent" {
		t.Errorf("legacy file listed in /usr/share/flatcar/oems/%s: %q, want absent", OEMID, got)
	}
	if !rep.AnyContains("usr_ext", "oem-"+VersionB) || rep.Get("oem_service") != "active ran" {
		t.Errorf("new OEM sysext not merged or its service did not run: usr_ext %q, service %q", rep.Get("usr_ext"), rep.Get("oem_service"))
	}
}

// TestQEMUOEMPartitionFull: as the move case, but the OEM partition has no
// room for the new image: it stays on the root partition, the link points
// there, no partial copy is left on the OEM partition, the sysext merges.
func TestQEMUOEMPartitionFull(t *testing.T) {
	in := RequireInputs(t)
	big := OEMSysext(VersionB)
	noise := make([]byte, 6<<20)
	rand.Read(noise)
	big.Files["usr/lib/extsr-ext/noise"] = string(noise)
	// 16 MiB partition, 12 MiB filler: about 2 MiB free, the image is 6 MiB
	// of incompressible data.
	spec, oldName, newName := oemRootCase(t, in, big, 16, 12<<20)
	m := NewMachine(t, in, spec)
	rep := m.Boot("B", "")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	RequireLink(t, rep, "oem-"+OEMID+".raw", "/etc/flatcar/oem-sysext/"+newName)
	if !rep.HasImage("/etc/flatcar/oem-sysext/" + newName) {
		t.Errorf("new image not on the root partition; images: %q", rep.All("image"))
	}
	if rep.HasImage("/oem/sysext/" + newName) {
		t.Errorf("partial copy of the new image left on the full OEM partition")
	}
	// The condition really happened: the copy to the OEM partition failed
	// (ENOSPC) and the previous image was moved off it first.
	failedMove := false
	for _, l := range append(rep.All("esr_log"), rep.All("esr_kmsg")...) {
		failedMove = failedMove || strings.Contains(l, "[failed]") && strings.Contains(l, "-> /oem/sysext/"+newName)
	}
	if !failedMove {
		t.Errorf("no failed move to /oem/sysext/%s in ext-setup-root's log: the partition was not full", newName)
	}
	if !rep.HasImage("/etc/flatcar/oem-sysext/" + oldName) {
		t.Errorf("previous image not moved off the OEM partition first; images: %q", rep.All("image"))
	}
	if !rep.AnyContains("usr_ext", "oem-"+VersionB) {
		t.Errorf("OEM sysext from the root partition not merged: %q", rep.Get("usr_ext"))
	}
}

// stageInitialHook moves the staged "initial" image into /oem/sysext after
// the first boot's report, so the second boot sees it.
const stageInitialHook = `#!/bin/sh
if [ -e /oem/staged/oem-test-initial.raw ]; then
	mv /oem/staged/oem-test-initial.raw /oem/sysext/ && sync
	printf 'EXTSR-RESULT staged=initial\n'
fi
`

// TestQEMUOEMNoActiveFlagThenInitial: without the active-oem flag and
// without an "initial" image the OEM link is not created (boot 1); with an
// oem-OEMID-initial.raw image (placed by boot 1) the link points to it and
// it is merged (boot 2), still without the flag.
func TestQEMUOEMNoActiveFlagThenInitial(t *testing.T) {
	in := RequireInputs(t)
	root := RootTree(t, in)
	oem := OEMTree(t)
	OEMSysext(VersionA).Build(t, filepath.Join(oem, "sysext", "oem-"+OEMID+"-"+VersionA+".raw"))
	initial := OEMSysext("initial")
	initial.Build(t, filepath.Join(oem, "staged", "oem-"+OEMID+"-initial.raw"))
	writeFile(t, root, "etc/extsr/check.d/90-stage-initial", stageInitialHook, 0o755)
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: oem})

	rep := m.Boot("A", "")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	if rep.AnyContains("link", "oem-"+OEMID+".raw") {
		t.Errorf("boot 1 (no active flag, no initial image): OEM link created: %q", rep.All("link"))
	}
	if rep.AnyContains("usr_ext", "oem-") {
		t.Errorf("boot 1: an OEM sysext was merged without the active flag: %q", rep.Get("usr_ext"))
	}
	if rep.Get("staged") != "initial" {
		t.Fatalf("boot 1 did not stage the initial image")
	}

	rep = m.Boot("A", "")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	RequireLink(t, rep, "oem-"+OEMID+".raw", "/oem/sysext/oem-"+OEMID+"-initial.raw")
	if !rep.AnyContains("usr_ext", "oem-initial") || rep.Get("oem_service") != "active ran" {
		t.Errorf("boot 2: initial OEM image not merged or its service did not run: usr_ext %q, service %q", rep.Get("usr_ext"), rep.Get("oem_service"))
	}
}

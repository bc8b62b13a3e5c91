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

	written := ""
	for boot := 1; boot <= 2; boot++ {
		rep := m.Boot("A", "")
		RequireStagesFinished(t, rep)
		RequireNoFailedUnits(t, rep)
		checkDefaultConfext(t, rep, boot, VersionA)
		written = checkPersist(t, rep, boot, written)
	}
}

// checkDefaultConfext checks what the first-boot scenario shows on every
// boot of /usr version v: the initrd merged v's default confext into a
// mutable, writable /etc overlay, and the booted systemd-confext
// recognised that merge and skipped its refresh.
func checkDefaultConfext(t *testing.T, rep *Report, boot int, v string) {
	t.Helper()
	if !rep.AnyContains("etc_mount", "overlay") {
		t.Errorf("boot %d: /etc is not an overlay: %q", boot, rep.All("etc_mount"))
	}
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext version="+v) {
		t.Errorf("boot %d: default confext file not in /etc: %q", boot, rep.All("file"))
	}
	if !rep.AnyContains("confext_meta_confexts", "00-flatcar-default") {
		t.Errorf("boot %d: /etc/.systemd-confext/confexts does not name the default confext: %q", boot, rep.All("confext_meta_confexts"))
	}
	if rep.Get("etc_writable") != "yes" {
		t.Errorf("boot %d: /etc not writable", boot)
	}
	RequireRefreshSkipped(t, rep, boot, "confext", "/etc")
	if !strings.Contains(rep.Get("confext_status"), "00-flatcar-default") {
		t.Errorf("boot %d: systemd-confext status does not list the default confext: %s", boot, rep.Get("confext_status"))
	}
}

// checkPersist checks persistHook's report: boot 1 finds no
// /etc/extsr/persist, every later boot finds what the previous boot wrote
// (prev), and every boot manages to write. It returns what this boot wrote.
func checkPersist(t *testing.T, rep *Report, boot int, prev string) string {
	t.Helper()
	before, written := rep.Get("persist_before"), rep.Get("persist_written")
	if written == "" || written == "none" {
		t.Errorf("boot %d: writing /etc/extsr/persist failed", boot)
	}
	switch {
	case boot == 1 && before != "none":
		t.Errorf("boot 1: /etc/extsr/persist already present: %q", before)
	case boot > 1 && before != prev:
		t.Errorf("boot %d: /etc/extsr/persist = %q, want what boot %d wrote (%q)", boot, before, boot-1, prev)
	}
	return written
}

package qemu

import (
	"regexp"
	"strings"
	"testing"
)

// cleanupHook reports the prepare scenario's files (as merged /etc shows
// them, and the real /etc underneath the overlay), then acts as the user
// for the boot's step (extsr.step=N on the kernel command line).
const cleanupHook = `#!/bin/sh
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
d=/etc/extsr/defaults
for f in same user deleted listed nodup new; do
	v=$(cat $d/$f.conf 2>/dev/null) || v=missing
	r "cleanup_$f" "$v"
done
r cleanup_recreated "$(cd $d/recreated 2>/dev/null && for f in *; do printf '%s:%s ' "$f" "$(cat "$f")"; done)"
mkdir -p /run/extsr-under && mount --bind / /run/extsr-under &&
	r cleanup_upper "$(ls -A /run/extsr-under$d | tr '\n' ' ')" && umount /run/extsr-under
case " $(cat /proc/cmdline) " in
*" extsr.step=1 "*)
	rm $d/deleted.conf $d/listed.conf
	rm -r $d/recreated && mkdir $d/recreated && echo mine >$d/recreated/a.conf
	echo new >$d/new.conf ;;
*" extsr.step=2 "*)
	cat /usr/share/flatcar/etc/extsr/defaults/nodup.conf >$d/nodup.conf
	touch /etc/.no-dup-update ;;
esac
sync
`

var prepareSummary = regexp.MustCompile(`prepare: (\d+) reset, (\d+) whiteouts, (\d+) deduplicated`)

// prepareCounts returns the prepare part of the pre stage's summary line.
func prepareCounts(t *testing.T, rep *Report) string {
	t.Helper()
	line := rep.Stages()["pre"].Line
	m := prepareSummary.FindString(line)
	if m == "" {
		t.Fatalf("no prepare counts in the pre stage line: %q", line)
	}
	return m
}

// TestQEMUOverlayCleanup is Flatcar's kola cl.overlay.cleanup for the
// prepare step: /etc entries identical to the vendor defaults are removed
// in the initrd and so follow a changed default after an A->B update; a
// file the user deleted stays deleted across reboots (its whiteout stays),
// unless the vendor lists it in etc-no-whiteouts; a recreated directory
// keeps the user's content only; new and changed files survive;
// /etc/.no-dup-update turns the dedup off.
func TestQEMUOverlayCleanup(t *testing.T) {
	in := RequireInputs(t)
	root := RootTree(t, in)
	d := "etc/extsr/defaults/"
	writeFile(t, root, d+"same.conf", "same default version="+VersionA+"\n", 0o644)
	writeFile(t, root, d+"user.conf", "mine\n", 0o644)
	writeFile(t, root, "etc/extsr/check.d/20-cleanup", cleanupHook, 0o755)
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: OEMTree(t)})

	expect := func(rep *Report, boot int, key, want string) {
		t.Helper()
		if got := rep.Get(key); got != want {
			t.Errorf("boot %d: %s = %q, want %q", boot, key, got, want)
		}
	}
	inUpper := func(rep *Report, name string) bool {
		return strings.Contains(" "+rep.Get("cleanup_upper")+" ", " "+name+" ")
	}

	// Boot 1, slot A: the copy identical to A's default is removed.
	rep := m.Boot("A", "extsr.step=1")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	t.Logf("boot 1: %s", prepareCounts(t, rep))
	expect(rep, 1, "cleanup_same", "same default version="+VersionA)
	expect(rep, 1, "cleanup_user", "mine")
	expect(rep, 1, "cleanup_deleted", "deleted default")
	expect(rep, 1, "cleanup_recreated", "a.conf:a default b.conf:b default ")
	if inUpper(rep, "same.conf") || !inUpper(rep, "user.conf") {
		t.Errorf("boot 1: real /etc/extsr/defaults holds %q: want user.conf, not same.conf", rep.Get("cleanup_upper"))
	}
	if c := prepareCounts(t, rep); !strings.Contains(c, "1 deduplicated") {
		t.Errorf("boot 1: %s, want 1 deduplicated", c)
	}

	// Boot 2, slot B (an update): same.conf follows B's default; what the
	// user deleted stays deleted, except the listed file; the recreated
	// directory has the user's content only.
	rep = m.Boot("B", "extsr.step=2")
	RequireStagesFinished(t, rep)
	t.Logf("boot 2: %s", prepareCounts(t, rep))
	expect(rep, 2, "cleanup_same", "same default version="+VersionB)
	expect(rep, 2, "cleanup_user", "mine")
	expect(rep, 2, "cleanup_deleted", "missing")
	expect(rep, 2, "cleanup_listed", "listed default")
	expect(rep, 2, "cleanup_new", "new")
	expect(rep, 2, "cleanup_recreated", "a.conf:mine ")
	if c := prepareCounts(t, rep); !strings.Contains(c, "1 whiteouts") {
		t.Errorf("boot 2: %s, want the listed whiteout removed", c)
	}

	// Boot 3, slot B: nodup.conf, written identical to B's default, is
	// kept because of /etc/.no-dup-update.
	rep = m.Boot("B", "extsr.step=3")
	RequireStagesFinished(t, rep)
	t.Logf("boot 3: %s", prepareCounts(t, rep))
	expect(rep, 3, "cleanup_nodup", "nodup default version="+VersionB)
	if !inUpper(rep, "nodup.conf") {
		t.Errorf("boot 3: nodup.conf removed despite /etc/.no-dup-update (real dir: %q)", rep.Get("cleanup_upper"))
	}
	if c := prepareCounts(t, rep); !strings.Contains(c, "0 deduplicated") {
		t.Errorf("boot 3: %s, want no dedup", c)
	}
}

// resetHook prepares a selective OS reset on the first boot (as
// flatcar-reset does) and reports the machine-id and the probe files.
const resetHook = `#!/bin/sh
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
r machine_id "$(cat /etc/machine-id)"
for f in /opt/keep/a /opt/drop/b /etc/zz-reset-drop.conf /etc/extsr/reset-keep.conf /var/lib/extsr-keep /selective-os-reset; do
	[ -e "$f" ] && v=present || v=missing
	r "reset_$f" "$v"
done
case " $(cat /proc/cmdline) " in
*" extsr.step=1 "*)
	printf '%s\n' '/(proc|sys|dev|run|tmp|mnt|media|srv|boot|oem|lost\+found)|/etc(/([^z].*|z[^z].*|z))?|/var(/.*)?|/home(/.*)?|/root(/.*)?|/opt(/keep(/.*)?)?' >/selective-os-reset
	sync ;;
esac
`

// TestQEMUSelectiveReset: flatcar-reset's flag file makes the next boot's
// initrd remove everything not matched by its keep regex (the keep list is
// honoured) and the machine-id, which systemd then regenerates.
func TestQEMUSelectiveReset(t *testing.T) {
	in := RequireInputs(t)
	root := RootTree(t, in)
	writeFile(t, root, "opt/keep/a", "a\n", 0o644)
	writeFile(t, root, "opt/drop/b", "b\n", 0o644)
	writeFile(t, root, "etc/zz-reset-drop.conf", "x\n", 0o644)
	writeFile(t, root, "etc/extsr/reset-keep.conf", "x\n", 0o644)
	writeFile(t, root, "var/lib/extsr-keep", "x\n", 0o644)
	writeFile(t, root, "etc/extsr/check.d/20-reset", resetHook, 0o755)
	// A first boot must not wait for systemd-firstboot's prompts.
	symlink(t, root, "etc/systemd/system/systemd-firstboot.service", "/dev/null")
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: OEMTree(t)})

	rep := m.Boot("A", "extsr.step=1")
	RequireStagesFinished(t, rep)
	before := rep.Get("machine_id")
	for _, f := range []string{"/opt/keep/a", "/opt/drop/b", "/etc/zz-reset-drop.conf"} {
		if rep.Get("reset_"+f) != "present" {
			t.Fatalf("boot 1: %s missing before the reset", f)
		}
	}
	rep = m.Boot("A", "extsr.step=2")
	RequireStagesFinished(t, rep)
	t.Logf("boot 2: %s", prepareCounts(t, rep))
	for f, want := range map[string]string{"/opt/keep/a": "present", "/etc/extsr/reset-keep.conf": "present", "/var/lib/extsr-keep": "present",
		"/opt/drop/b": "missing", "/etc/zz-reset-drop.conf": "missing", "/selective-os-reset": "missing"} {
		if got := rep.Get("reset_" + f); got != want {
			t.Errorf("after the reset: %s %s, want %s", f, got, want)
		}
	}
	after := rep.Get("machine_id")
	if after == before || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(after) {
		t.Errorf("machine-id %q -> %q: not regenerated", before, after)
	}
	if c := prepareCounts(t, rep); strings.HasPrefix(c, "prepare: 0 reset") {
		t.Errorf("%s: nothing reset", c)
	}
}

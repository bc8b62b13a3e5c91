package qemu

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The verity scenarios: the default confext of both /usr slots is a signed
// dm-verity DDI built with systemd-repart's Flatcar recipe (vendor key;
// certificate in the initrd's /etc/verity.d and in /usr/lib/verity.d),
// and further signed, tampered or badly signed confexts sit next to it.

// verityHook runs in the booted guest: it reads the tampered file (dm-verity
// must answer EIO and never return the altered bytes), lists the kernel's
// verity complaints, then (on slot B only) moves the stashed bad images
// into /var/lib/confexts for the next boot.
const verityHook = `#!/bin/sh
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
out=$(dd if=/etc/extsr/tampered.bin of=/dev/null bs=4096 2>&1); r tampered_read_rc "$? $(echo "$out" | tr '\n' ' ')"
# The altered byte turns one "-" into ","; it must never be readable.
n=$(cat /etc/extsr/tampered.bin 2>/dev/null | tr -cd ',' | wc -c); r tampered_altered_bytes_seen "$n"
dmesg | grep -a 'verity' | while IFS= read -r l; do r verity_kmsg "$l"; done
# The stock systemd-confext 262 refresh on our record (the unit runs
# ext-setup-root's late refresh): it must skip on slots A and B.
if [ -d /var/lib/extsr-stash ]; then
	systemd-confext refresh 2>&1 | tail -n 1 | while IFS= read -r l; do r stock_refresh "$l"; done
fi
if [ "$(. /usr/lib/os-release; echo "$VERSION_ID")" = 1001.0.0 ] && [ -d /var/lib/extsr-stash ]; then
	mv /var/lib/extsr-stash/*.raw /var/lib/confexts/ && rmdir /var/lib/extsr-stash && sync && r stash_moved yes
fi
`

// scratchHook runs last in the guest: in a scratch root it merges a signed
// verity confext, refreshes it with --always-refresh (a replaced merge),
// then unmerges it, and counts the dm-verity devices after each step
// (deferred removal must leave none behind once the mounts are gone).
const scratchHook = `#!/bin/sh
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
count() { n=0; for d in /sys/block/dm-*; do [ -e "$d/dm/uuid" ] && case "$(cat "$d/dm/uuid")" in CRYPT-VERITY-*) n=$((n+1));; esac; done; echo $n; }
R=/run/extsr-scratch
mkdir -p $R/etc $R/var/lib/confexts $R/usr/lib
cp /usr/lib/os-release $R/usr/lib/os-release
cp /var/lib/extsr-scratch.raw $R/var/lib/confexts/30-scratch.raw
r scratch_dm_before "$(count)"
ext-setup-root confext --root=$R merge >/run/extsr-scratch.log 2>&1; r scratch_merge_rc "$?"
r scratch_dm_merged "$(count)"
ext-setup-root confext --root=$R --always-refresh=yes refresh >>/run/extsr-scratch.log 2>&1; r scratch_refresh_rc "$?"
r scratch_dm_refreshed "$(count)"
ext-setup-root confext --root=$R unmerge >>/run/extsr-scratch.log 2>&1; r scratch_unmerge_rc "$?"
sleep 1
r scratch_dm_unmerged "$(count)"
while IFS= read -r l; do r scratch_log "$l"; done </run/extsr-scratch.log
`

// signedPolicy is the image policy of boot 3 (kernel command line).
const signedPolicy = "root=signed+absent"

// verityDisk stages the disk of TestQEMUVerity.
func verityDisk(t *testing.T, in *Inputs) DiskSpec {
	vendor, other := TestKey(t, "vendor"), TestKey(t, "other")
	root := RootTree(t, in)
	writeFile(t, root, "etc/extsr/check.d/50-verity", verityHook, 0o755)
	writeFile(t, root, "etc/extsr/check.d/90-scratch", scratchHook, 0o755)
	cx := filepath.Join(root, "var/lib/confexts")

	// (b) signed, then one byte of the file's data altered (signature and
	// hash tree untouched).
	tampered := filepath.Join(cx, "20-tampered.raw")
	Ext{Name: "20-tampered", Confext: true, Files: map[string]string{"etc/extsr/tampered.bin": tamperPattern}}.BuildDDI(t, tampered, DDIOptions{Key: &vendor})
	off := FindInImage(t, tampered, tamperPattern[:4096])
	FlipByte(t, tampered, off+40000-(40000%37)+19) // a "-" in the middle of the file becomes ","

	// For the scratch merge/refresh/unmerge in the booted system.
	Ext{Name: "30-scratch", Confext: true, Files: map[string]string{"etc/extsr/scratch.conf": "scratch\n"}}.BuildDDI(t, filepath.Join(root, "var/lib/extsr-scratch.raw"), DDIOptions{Key: &vendor})

	// Stashed for boot 3: (c) a corrupted signature, (c) a root hash in
	// the signature JSON that is not the image's, (e) signed with a key
	// whose certificate is nowhere trusted.
	st := filepath.Join(root, "var/lib/extsr-stash")
	badsig := filepath.Join(st, "40-badsig.raw")
	Ext{Name: "40-badsig", Confext: true, Files: map[string]string{"etc/extsr/badsig.conf": "badsig\n"}}.BuildDDI(t, badsig, DDIOptions{Key: &vendor})
	flipSignatureChar(t, badsig, `"signature":"`, 40)
	badroot := filepath.Join(st, "41-badroothash.raw")
	Ext{Name: "41-badroothash", Confext: true, Files: map[string]string{"etc/extsr/badroothash.conf": "badroothash\n"}}.BuildDDI(t, badroot, DDIOptions{Key: &vendor})
	flipSignatureChar(t, badroot, `"rootHash":"`, 5)
	Ext{Name: "42-wrongcert", Confext: true, Files: map[string]string{"etc/extsr/wrongcert.conf": "wrongcert\n"}}.BuildDDI(t, filepath.Join(st, "42-wrongcert.raw"), DDIOptions{Key: &other})
	// (d) under the "signed" policy boot 3 runs with: an unsigned verity
	// DDI and a plain squashfs.
	Ext{Name: "43-unsigned", Confext: true, Files: map[string]string{"etc/extsr/unsigned.conf": "unsigned\n"}}.BuildDDI(t, filepath.Join(st, "43-unsigned.raw"), DDIOptions{})
	Ext{Name: "44-plain", Confext: true, Files: map[string]string{"etc/extsr/plain.conf": "plain\n"}}.Build(t, filepath.Join(st, "44-plain.raw"))
	return DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: OEMTree(t), Verity: true}
}

// flipSignatureChar changes one hex/base64 character of the signature
// partition's JSON, n characters after the key, to another valid one.
func flipSignatureChar(t *testing.T, img, key string, n int64) {
	t.Helper()
	off := FindInImage(t, img, key) + int64(len(key)) + n
	b := readAt(t, img, off, 1)
	c := byte('0')
	if b[0] == '0' {
		c = '1'
	}
	writeAt(t, img, off, []byte{c})
}

var dmVerityRE = regexp.MustCompile(`^(\S+) uuid=(CRYPT-VERITY-[0-9a-f]{32}-(\S+)) slaves=`)

// verityDevices returns the dm-verity devices the guest listed: name ->
// uuid, checking the naming and uuid convention of systemd 262.
func verityDevices(t *testing.T, rep *Report, boot int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range rep.All("dm") {
		m := dmVerityRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[3] != m[1] {
			t.Errorf("boot %d: dm uuid %s does not end in the device name %s", boot, m[2], m[1])
		}
		if !regexp.MustCompile(`^loop\d+(p\d+)?-\d+-verity$`).MatchString(m[1]) {
			t.Errorf("boot %d: dm name %s is not loopNpM-K-verity", boot, m[1])
		}
		out[m[1]] = m[2]
	}
	return out
}

// requireVerityMerge checks that the default confext of version v and the
// tampered confext came in through dm-verity: origin records only path
// and verityHash for them, and two verity devices serve the merge.
func requireVerityMerge(t *testing.T, rep *Report, boot int, v string, countDevices bool) {
	t.Helper()
	RequireStagesFinished(t, rep)
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext version="+v) {
		t.Errorf("boot %d: default confext (signed DDI) not merged: %q", boot, rep.All("file"))
	}
	origin := rep.Get("confext_meta_origin")
	for _, name := range []string{"00-flatcar-default", "20-tampered"} {
		re := regexp.MustCompile(`"` + name + `"\s*:\s*\{\s*"path"\s*:\s*"[^"]+"\s*,\s*"verityHash"\s*:\s*"[0-9a-f]{64}"\s*\}`)
		if !re.MatchString(origin) {
			t.Errorf("boot %d: origin does not record %s by path and verityHash only: %s", boot, name, origin)
		}
	}
	devs := verityDevices(t, rep, boot)
	if countDevices && len(devs) != 2 {
		t.Errorf("boot %d: %d dm-verity devices, want 2 (default and tampered confext; a replaced merge must not leave old ones): %q", boot, len(devs), rep.All("dm"))
	}
	esr := strings.Join(append(append(rep.All("esr_log"), rep.All("esr_unit")...), rep.All("esr_kmsg")...), "\n")
	if !strings.Contains(esr, "dm-verity device") {
		t.Errorf("boot %d: ext-setup-root logged no dm-verity set-up:\n%s", boot, esr)
	}
}

// requireTamperedEIO: the merge took the tampered image, reading its file
// fails with EIO and the altered bytes never appear.
func requireTamperedEIO(t *testing.T, rep *Report, boot int) {
	t.Helper()
	rc := rep.Get("tampered_read_rc")
	if strings.HasPrefix(rc, "0 ") || !strings.Contains(rc, "Input/output error") {
		t.Errorf("boot %d: reading the tampered file: %q, want an I/O error", boot, rc)
	}
	if n := rep.Get("tampered_altered_bytes_seen"); n != "0" {
		t.Errorf("boot %d: the altered bytes were readable (%s times)", boot, n)
	}
	if !rep.AnyContains("verity_kmsg", "is corrupted") {
		t.Errorf("boot %d: no dm-verity corruption message in the kernel log: %q", boot, rep.All("verity_kmsg"))
	}
}

// TestQEMUVerity boots the verity disk three times: slot A (a, b), slot B
// after the update to another signed default confext (a; the hook then
// moves five bad images in), and slot A with the bad images and the
// "signed" policy on the kernel command line (c, d, e).
// Every boot also runs the scratch merge/refresh/unmerge (f).
func TestQEMUVerity(t *testing.T) {
	in := RequireInputs(t)
	spec := verityDisk(t, in)
	m := NewMachineWith(t, in, spec, InitrdSpec{Ours: true, Certs: []SigningKey{TestKey(t, "vendor")}})

	for i, step := range []struct{ slot, version, cmdline string }{{"A", VersionA, ""}, {"B", VersionB, ""}, {"A", VersionA, "ext-setup-root.image-policy=" + signedPolicy}} {
		boot := i + 1
		rep := m.Boot(step.slot, step.cmdline)
		// Boot 3: the booted systemd-confext merges again (the bad
		// images differ from our record), with devices of its own.
		requireVerityMerge(t, rep, boot, step.version, boot != 3)
		requireTamperedEIO(t, rep, boot)
		requireScratch(t, rep, boot)
		if rep.Get("etc_writable") != "yes" {
			t.Errorf("boot %d: /etc not writable", boot)
		}
		switch boot {
		case 1, 2:
			// (a) the booted systemd-confext 262 finds our record equal to
			// its own dissection (verityHash) and skips.
			RequireRefreshSkipped(t, rep, boot, "confext", "/etc")
			if !strings.Contains(rep.Get("stock_refresh"), "Skipping extension refresh") {
				t.Errorf("boot %d: systemd-confext 262's own refresh did not skip on our record: %q", boot, rep.Get("stock_refresh"))
			}
			RequireNoFailedUnits(t, rep)
			if boot == 2 && rep.Get("stash_moved") != "yes" {
				t.Fatalf("boot 2: the bad images were not moved in for boot 3")
			}
		case 3:
			esr := strings.Join(append(append(rep.All("esr_log"), rep.All("esr_unit")...), rep.All("esr_kmsg")...), "\n")
			for _, name := range []string{"40-badsig", "41-badroothash", "42-wrongcert", "43-unsigned", "44-plain"} {
				want := `(signature|verity|refus)`
				if name == "43-unsigned" || name == "44-plain" {
					want = `policy.*` + regexp.QuoteMeta(signedPolicy)
				}
				if !regexp.MustCompile(`(?m)` + name + `.*` + want).MatchString(esr) {
					t.Errorf("boot 3: no ext-setup-root line refuses %s matching %s:\n%s", name, want, esr)
				}
				if regexp.MustCompile(`Using extensions .*` + name).MatchString(esr) {
					t.Errorf("boot 3: ext-setup-root merged %s", name)
				}
			}
			t.Logf("boot 3: the booted systemd-confext with its default image policy, on the same images: %q", rep.All("confext_journal"))
		}
		logVerityFacts(t, rep, boot)
		if t.Failed() {
			t.Fatalf("boot %d failed; log %s", boot, rep.LogPath)
		}
	}
}

func requireScratch(t *testing.T, rep *Report, boot int) {
	t.Helper()
	get := func(k string) int {
		n, err := strconv.Atoi(rep.Get(k))
		if err != nil {
			t.Errorf("boot %d: %s = %q", boot, k, rep.Get(k))
		}
		return n
	}
	before := get("scratch_dm_before")
	for _, k := range []string{"scratch_merge_rc", "scratch_refresh_rc", "scratch_unmerge_rc"} {
		if rep.Get(k) != "0" {
			t.Errorf("boot %d: %s = %q; log: %q", boot, k, rep.Get(k), rep.All("scratch_log"))
		}
	}
	if get("scratch_dm_merged") != before+1 || get("scratch_dm_refreshed") != before+1 || get("scratch_dm_unmerged") != before {
		t.Errorf("boot %d: verity devices before/merged/refreshed/unmerged = %d/%s/%s/%s, want %d/%d/%d/%d", boot, before,
			rep.Get("scratch_dm_merged"), rep.Get("scratch_dm_refreshed"), rep.Get("scratch_dm_unmerged"), before, before+1, before+1, before)
	}
}

// logVerityFacts logs the devices, the loop diskseqs and the units' times.
func logVerityFacts(t *testing.T, rep *Report, boot int) {
	t.Helper()
	t.Logf("boot %d: dm %q; loops %q", boot, rep.All("dm"), rep.All("loop"))
	t.Logf("boot %d: units %q", boot, rep.All("unit_time"))
	st := rep.Stages()
	t.Logf("boot %d: stage pre %d ms, post %d ms", boot, st["pre"].Millis, st["post"].Millis)
}

// refreshHook times an unchanged refresh of the signed verity merge in the
// booted system: ext-setup-root's, then systemd-confext 262's.
const refreshHook = `#!/bin/sh
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
for i in 1 2 3; do
	a=$(ms); out=$(ext-setup-root confext refresh 2>&1); rc=$?; b=$(ms)
	r ours_refresh "$((b-a)) ms rc=$rc $(echo "$out" | tail -n 2 | tr '\n' ' ')"
done
a=$(ms); out=$(systemd-confext refresh 2>&1); rc=$?; b=$(ms)
r systemd_refresh "$((b-a)) ms rc=$rc $(echo "$out" | tail -n 2 | tr '\n' ' ')"
`

const initrdTimesHook = `#!/bin/sh
journalctl -b -o short-monotonic --no-pager -u ext-setup-root-pre.service -u systemd-confext-sysroot.service -u modprobe@dm_verity.service |
	while IFS= read -r l; do printf 'EXTSR-RESULT initrd_ts=%s\n' "$l"; done
# The floor under TCG: starting a process at all (/bin/true) and starting
# ours (version: runtime start-up, no work), five times each.
ms() { echo $(( $(date +%s%N) / 1000000 )); }
for c in /bin/true "ext-setup-root version"; do
	t=""
	for i in 1 2 3 4 5; do a=$(ms); $c >/dev/null 2>&1; b=$(ms); t="$t $((b-a))"; done
	printf 'EXTSR-RESULT startup=%s:%s ms\n' "$c" "$t"
done
# A dry-run pre stage on a scratch root: its own start-up line (exec to
# stage start, kernel feature probe).
mkdir -p /var/lib/extsr-st/etc /var/lib/extsr-st/usr/lib && cp /usr/lib/os-release /var/lib/extsr-st/usr/lib/
for i in 1 2 3; do
	ext-setup-root boot --stage=pre --root=/var/lib/extsr-st --dry-run 2>&1 | grep -a "process start-up" |
		while IFS= read -r l; do printf 'EXTSR-RESULT startup=booted dry run: %s\n' "$l"; done
done
rm -rf /var/lib/extsr-st
`

var unitLineRE = regexp.MustCompile(`^\[\s*([0-9.]+)\] .*(Starting|Finished|Failed to start) (\S+\.service)`)

// unitSpan returns the guest seconds between the start and the finish of
// unit, from the journal's monotonic timestamps.
func unitSpan(rep *Report, unit string) (float64, bool) {
	var start, end float64
	var haveS, haveE bool
	for _, l := range rep.All("unit_time") {
		m := unitLineRE.FindStringSubmatch(l)
		if m == nil || m[3] != unit {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		if m[2] == "Starting" {
			start, haveS = v, true
		} else {
			end, haveE = v, true
		}
	}
	return end - start, haveS && haveE
}

var msRE = regexp.MustCompile(`^(\d+) ms`)

// TestQEMUVerityVsSysroot measures, on the same disk (signed DDI default
// confext, nothing else): the initrd merge by ext-setup-root (unit
// ext-setup-root-pre.service) against systemd 262's
// systemd-confext-sysroot.service in a stock dracut initrd with its
// systemd-sysext module, and the unchanged refresh of the signed verity
// merge in the booted system, ours against systemd-confext's.
func TestQEMUVerityVsSysroot(t *testing.T) {
	in := RequireInputs(t)
	root := RootTree(t, in)
	writeFile(t, root, "etc/extsr/check.d/60-refresh", refreshHook, 0o755)
	// The in-guest differential (test/qemu/vdiff): systemd-confext 262 and
	// ext-setup-root merge a copy of the same signed default confext into
	// a scratch root; same tree, metadata and origin record.
	buildGuestTool(t, "./test/qemu/vdiff", filepath.Join(root, "var/lib/extsr/vdiff"))
	// Where the initrd time goes: both initrd units' journals with
	// monotonic timestamps (unit start to the first line is process
	// start-up; the rest is per operation).
	writeFile(t, root, "etc/extsr/check.d/65-initrd-times", initrdTimesHook, 0o755)
	writeFile(t, root, "etc/extsr/check.d/70-vdiff", "#!/bin/sh\n/var/lib/extsr/vdiff /usr/lib/confexts/00-flatcar-default.raw\n", 0o755)
	spec := DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: OEMTree(t), Verity: true}
	vendor := TestKey(t, "vendor")
	ours := NewMachineWith(t, in, spec, InitrdSpec{Ours: true, Certs: []SigningKey{vendor}})
	rep := ours.Boot("A", "")
	RequireStagesFinished(t, rep)
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext version="+VersionA) {
		t.Errorf("ours: default confext not merged: %q", rep.All("file"))
	}
	if len(verityDevices(t, rep, 1)) != 1 {
		t.Errorf("ours: want one dm-verity device: %q", rep.All("dm"))
	}
	oursUnit, ok := unitSpan(rep, "ext-setup-root-pre.service")
	if !ok {
		t.Errorf("ours: no start/finish of ext-setup-root-pre.service: %q", rep.All("unit_time"))
	}
	t.Logf("ours: ext-setup-root-pre.service %.3f s (stage pre %d ms); refreshes %q; systemd-confext refresh %q",
		oursUnit, rep.Stages()["pre"].Millis, rep.All("ours_refresh"), rep.Get("systemd_refresh"))
	for _, l := range rep.All("ours_refresh") {
		if !strings.Contains(l, "rc=0") || !strings.Contains(l, "Skipping extension refresh") {
			t.Errorf("ours: unchanged refresh did not skip: %q", l)
		}
	}
	logVerityFacts(t, rep, 1)
	// The differential: same tree, metadata and origin as systemd-confext.
	t.Logf("differential: systemd's origin %s", rep.Get("vdiff_origin_systemd"))
	t.Logf("differential: our origin %s (%s files compared)", rep.Get("vdiff_origin_ours"), rep.Get("vdiff_files"))
	// Both merges' verity measurement calls (vdiff checks they match).
	for _, k := range []string{"systemd", "systemd_refresh", "systemd_unmerge", "ours", "systemd_refresh_of_ours", "checked"} {
		t.Logf("differential: verity measurement calls, %s: %q", k, rep.Get("vdiff_measure_"+k))
	}
	if strings.HasPrefix(rep.Get("vdiff_measure_systemd"), "0") || rep.Get("vdiff_measure_systemd") == "" {
		t.Errorf("differential: no measurement call by systemd-confext 262 recorded (vdiff_measure=%q)", rep.Get("vdiff_measure"))
	}
	for _, e := range rep.All("vdiff_err") {
		t.Errorf("differential with systemd-confext 262 in the guest: %s", e)
	}
	if rep.Get("vdiff") != "ok" {
		t.Errorf("differential with systemd-confext 262 in the guest did not pass: vdiff=%q", rep.Get("vdiff"))
	}

	// The peer: a stock dracut initrd with systemd-confext-sysroot.service.
	stock := &Machine{t: t, in: in, initrd: InitrdFor(t, in, InitrdSpec{SysextSysroot: true, Certs: []SigningKey{vendor}}), disk: ours.disk}
	rep2 := Boot(t, in, BootSpec{Initrd: stock.initrd, Disk: stock.disk, Cmdline: Cmdline("A")})
	if !rep2.Done {
		t.Fatalf("stock boot did not finish:\n%s\nlog %s", rep2.Tail(60), rep2.LogPath)
	}
	sdUnit, ok := unitSpan(rep2, "systemd-confext-sysroot.service")
	if !ok {
		t.Errorf("stock: no start/finish of systemd-confext-sysroot.service: %q", rep2.All("unit_time"))
	}
	t.Logf("stock: systemd-confext-sysroot.service %.3f s; its journal %q", sdUnit, rep2.All("sysroot_journal"))
	logVerityFacts(t, rep2, 2)
	for _, l := range rep.All("initrd_ts") {
		t.Logf("ours initrd: %s", l)
	}
	for _, l := range rep2.All("initrd_ts") {
		t.Logf("stock initrd: %s", l)
	}
	for _, l := range rep.All("startup") {
		t.Logf("MEASURE process start-up in the booted guest: %s", l)
	}
	if oursUnit > 0 && sdUnit > 0 {
		t.Logf("MEASURE initrd merge of one signed verity confext: ours %.3f s, systemd-confext-sysroot %.3f s, ratio 1/%.1f", oursUnit, sdUnit, sdUnit/oursUnit)
	}
	var oursMS []int
	for _, l := range rep.All("ours_refresh") {
		if m := msRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			oursMS = append(oursMS, n)
		}
	}
	if m := msRE.FindStringSubmatch(rep.Get("systemd_refresh")); m != nil && len(oursMS) > 0 {
		sd, _ := strconv.Atoi(m[1])
		best := oursMS[0]
		for _, n := range oursMS {
			best = min(best, n)
		}
		t.Logf("MEASURE unchanged refresh of the signed verity merge: ours %v ms, systemd-confext %d ms, ratio 1/%.1f (best of ours)", oursMS, sd, float64(sd)/float64(max(best, 1)))
	}
}

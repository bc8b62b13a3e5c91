package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Power cuts (docs/powercut.md). Disk model (a): the disk is attached with
// cache=unsafe (vm.go), so QEMU writes every completed guest write into the
// host file at once and ignores flushes; a SIGKILL of QEMU loses the
// guest's page cache, its unflushed file-system journal and anything in
// flight, but every write the virtual disk completed stays.
//
// The cut points come from the production binary's own operation log
// ("op(N): [started] DESC" / "[finished]"). The kernel command line
// sends it to /dev/kmsg (systemd.setenv=EXT_SETUP_ROOT_LOG=kmsg, the
// binary's documented override) and the kernel prints kmsg records on the
// serial console as they are written, so the host sees an operation start
// while it runs, not after journald got round to it.

// CutCmdline makes ext-setup-root's log reach the console synchronously:
// kmsg as the destination, no rate limit on /dev/kmsg writes.
const CutCmdline = "systemd.setenv=EXT_SETUP_ROOT_LOG=kmsg printk.devkmsg=on"

// CutPoint says when the host cuts the power: MaxDelay after the Nth
// console line (counting from 1) that logs an operation matching Op in
// Event ("started" or "finished"); the delay is uniform in [0, MaxDelay].
type CutPoint struct {
	Name     string // short, for test names and the soak table
	Kind     string // which side effect: prepare, ab-move, link, pre-merge, post-replace, late-refresh, fetch-place
	Op       *regexp.Regexp
	Event    string
	N        int
	MaxDelay time.Duration
}

// cutOpRE matches an operation line of ext-setup-root on the console.
var cutOpRE = regexp.MustCompile(`ext-setup-root(?:\[\d+\])?: op\((\d+)\): \[(started|finished|failed)\]\s+(.*)$`)

// CutPoints is the catalogue: every kind of side effect the update boot
// (slot A -> B, see powercutDisk) makes, in boot order.
var CutPoints = []CutPoint{
	{"reset", "prepare", regexp.MustCompile(`^selective OS reset`), "started", 1, 400 * time.Millisecond},
	{"dedup", "prepare", regexp.MustCompile(`^remove entries of .* identical to the vendor default `), "started", 1, 60 * time.Millisecond},
	{"prepare-done", "prepare", regexp.MustCompile(`^prepare .*/etc hygiene`), "finished", 1, 20 * time.Millisecond},
	{"move-old-off-oem", "ab-move", regexp.MustCompile(`^move /oem/sysext/`), "started", 1, 150 * time.Millisecond},
	{"move-new-to-oem", "ab-move", regexp.MustCompile(`^move .* -> /oem/sysext/`), "started", 1, 150 * time.Millisecond},
	{"move-done", "ab-move", regexp.MustCompile(`^move `), "finished", 1, 5 * time.Millisecond},
	{"link-1", "link", regexp.MustCompile(`^symlink .*extensions/`), "started", 1, 10 * time.Millisecond},
	{"link-2", "link", regexp.MustCompile(`^symlink .*extensions/`), "started", 2, 10 * time.Millisecond},
	{"links-done", "link", regexp.MustCompile(`^select A/B images`), "finished", 1, 5 * time.Millisecond},
	{"pre-merge", "pre-merge", regexp.MustCompile(`^assemble confext overlay`), "started", 1, 80 * time.Millisecond},
	{"pre-attach", "pre-merge", regexp.MustCompile(`^attach confext overlay at`), "started", 1, 20 * time.Millisecond},
	{"post-sysext", "post-replace", regexp.MustCompile(`^attach sysext overlay at`), "started", 1, 30 * time.Millisecond},
	{"post-replace", "post-replace", regexp.MustCompile(`^attach confext overlay at .*replace existing merge: true`), "started", 1, 30 * time.Millisecond},
	{"post-old-workdir", "post-replace", regexp.MustCompile(`^remove old work dir`), "started", 1, 10 * time.Millisecond},
	{"late-confext", "late-refresh", regexp.MustCompile(`^confext refresh in /$`), "started", 1, 100 * time.Millisecond},
	{"late-sysext", "late-refresh", regexp.MustCompile(`^sysext refresh in /$`), "started", 1, 100 * time.Millisecond},
	// A download being placed: the fetch scenario (powercut_fetch_test.go), in
	// which the update boot downloads slot B's missing OEM image before
	// the A/B moves. The image is written under its temp name (extract),
	// then fsynced and renamed into /etc/flatcar/oem-sysext (place).
	{"fetch-extract", "fetch-place", regexp.MustCompile(`^extract the image of \S+ into \S+/oem-sysext/`), "started", 1, 300 * time.Millisecond},
	{"fetch-place", "fetch-place", regexp.MustCompile(`^place \S+\.ext-setup-root-tmp as \S+/oem-sysext/`), "started", 1, 20 * time.Millisecond},
	{"fetch-placed", "fetch-place", regexp.MustCompile(`^place \S+\.ext-setup-root-tmp as \S+/oem-sysext/`), "finished", 1, 5 * time.Millisecond},
}

// fetches reports whether c belongs to the fetch scenario: its update boot
// downloads slot B's OEM image instead of finding it staged.
func (c CutPoint) fetches() bool { return c.Kind == "fetch-place" }

// CutPointNamed returns the catalogue entry name.
func CutPointNamed(t testing.TB, name string) CutPoint {
	t.Helper()
	for _, c := range CutPoints {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no cut point %q", name)
	return CutPoint{}
}

// CutResult is what happened at one cut.
type CutResult struct {
	Point  CutPoint
	Delay  time.Duration
	OpLine string // the console line that triggered the cut ("" = never seen)
	Inside bool   // the triggering operation had not logged its end when the power went
	LastOp string // the last operation line on the console before the cut
	Note   string // what the recovery did, when it matters (the fetch scenario)
}

// cutWatcher returns the BootSpec.OnLine function of c: it cuts the
// power delay after the Nth matching operation line.
func cutWatcher(c CutPoint, delay time.Duration) func(string, func()) {
	seen := 0
	return func(line string, cut func()) {
		m := cutOpRE.FindStringSubmatch(line)
		if m == nil || seen >= c.N || !cutEventMatches(c, m[2]) || !c.Op.MatchString(m[3]) {
			return
		}
		if seen++; seen == c.N {
			time.AfterFunc(delay, cut)
		}
	}
}

func cutEventMatches(c CutPoint, ev string) bool {
	return ev == c.Event || c.Event == "finished" && ev == "failed"
}

// analyseCut fills res from the cut boot's console: the triggering line,
// whether its operation logged its end before the power went (everything
// the guest printed before the SIGKILL is on the console, nothing after),
// and the last operation line.
func analyseCut(rep *Report, res *CutResult) {
	seen := 0
	id, desc := "", ""
	for _, l := range rep.Lines {
		m := cutOpRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		res.LastOp = strings.TrimSpace(m[0])
		if res.OpLine != "" {
			// The end line repeats the description and adds the duration.
			if m[1] == id && strings.HasPrefix(m[3], desc) && m[2] != "started" {
				res.Inside = false
			}
			continue
		}
		if cutEventMatches(res.Point, m[2]) && res.Point.Op.MatchString(m[3]) {
			if seen++; seen == res.Point.N {
				res.OpLine, id, desc = strings.TrimSpace(m[0]), m[1], m[3]
				res.Inside = m[2] == "started"
			}
		}
	}
}

// Power-cut scenario files. User files are checked byte for byte after
// every recovery against the checksums the reporter printed before.
var powercutUserFiles = []string{
	"/etc/extsr/persist", "/etc/extsr/defaults/user.conf", "/etc/extsr/user-blob",
	"/opt/keep/data", "/root/notes", "/home/u/blob", "/var/lib/extsr-user/blob",
}

// powercutHook runs in every boot of the scenario (check.d): the setup
// step (extsr.step=setup, the slot A boot) plays the updater and the user
// before the update boot: it places slot B's OEM image on the root
// partition (as a download would), writes two /etc copies identical to
// slot B's defaults (for the dedup) and flatcar-reset's flag. Every boot
// then reports checksums of the user files, leftovers and a digest of the
// disk state (the real /etc under the overlay, /opt, /root, /home, the OEM
// partition), one line per entry so that a difference names the entry.
const powercutHook = `#!/bin/sh
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
case " $(cat /proc/cmdline) " in
*" extsr.step=setup "*)
	cp /var/lib/extsr/staged/oem-test-B.raw /etc/flatcar/oem-sysext/oem-test-` + VersionB + `.raw
	printf 'same default version=` + VersionB + `\n' >/etc/extsr/defaults/same.conf
	printf 'nodup default version=` + VersionB + `\n' >/etc/extsr/defaults/nodup.conf
	printf '%s\n' '/(proc|sys|dev|run|tmp|mnt|media|srv|boot|oem|lost\+found)|/etc(/([^z].*|z[^z].*|z))?|/var(/.*)?|/home(/.*)?|/root(/.*)?|/opt(/keep(/.*)?)?' >/selective-os-reset
	sync
	r setup done ;;
esac
for f in USERFILES; do r usersum "$(sha256sum "$f" 2>&1)"; done
for f in /oem/sysext/*.raw /etc/flatcar/oem-sysext/*.raw /etc/flatcar/sysext/*.raw; do [ -f "$f" ] && r imagesum "$(sha256sum "$f")"; done
u=/run/extsr-pc
mkdir -p $u/root && mount --bind / $u/root || r error "bind /"
find $u/root /oem -xdev \( -name '*.ext-setup-root-tmp' -o -name '.systemd-*-workdir*' \) -prune -print | sed "s|^$u/root||" | while IFS= read -r l; do r leftover "$l"; done
for h in etc usr opt; do [ -f /$h/.systemd-confext/work_dir ] && r work_dir "$(cat /$h/.systemd-confext/work_dir)"; [ -f /$h/.systemd-sysext/work_dir ] && r work_dir "$(cat /$h/.systemd-sysext/work_dir)"; done
r dup "$(cd $u/root/etc/extsr/defaults && ls same.conf nodup.conf 2>/dev/null | tr '\n' ' ')"
r drop "$(ls -d $u/root/opt/drop $u/root/etc/zz-drop-* $u/root/selective-os-reset 2>/dev/null | wc -l)"
(cd $u/root && find etc opt root home selective-os-reset -xdev \( -name '.systemd-*' -o -path etc/machine-id \) -prune -o -printf '%p %y %m %l\n' 2>/dev/null
 cd /oem && find . -xdev -printf 'oem/%p %y %m %l\n') | sort >/run/extsr-state
(cd $u/root && find etc opt root home -xdev \( -name '.systemd-*' -o -path etc/machine-id \) -prune -o -type f -print0 | sort -z | xargs -0 sha256sum) >>/run/extsr-state
r state_sum "$(sha256sum </run/extsr-state | cut -d' ' -f1) $(wc -l </run/extsr-state)"
grep -qw extsr.state /proc/cmdline && while IFS= read -r l; do r state "$l"; done </run/extsr-state
umount $u/root
`

// powercutDisk stages the update scenario: slot A's OEM image on the OEM
// partition (active flag set), slot B's staged for the setup step, the
// Flatcar extension foo in both versions, user files, and work for the
// prepare step (a tree for the selective reset to remove); extra, when
// set, adds a scenario's files to the root tree. OEM images carry
// incompressible filler so that their cross-partition moves take a while.
func powercutDisk(t *testing.T, in *Inputs, extra func(t *testing.T, root string)) (DiskSpec, map[string]string) {
	t.Helper()
	root := RootTree(t, in)
	if extra != nil {
		extra(t, root)
	}
	oem := OEMTree(t)
	writeFile(t, oem, "sysext/active-oem-"+OEMID, "", 0o644)
	writeFile(t, root, "etc/flatcar/enabled-sysext.conf", "# test\nfoo\n", 0o644)
	sums := map[string]string{}
	build := func(e Ext, p string) {
		e.Build(t, p)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		sums[filepath.Base(p)] = hex.EncodeToString(h[:])
	}
	for _, v := range []string{VersionA, VersionB} {
		o := OEMSysext(v)
		o.Files["usr/lib/extsr-ext/filler"] = noise(t, 6<<20)
		p := filepath.Join(oem, "sysext", "oem-"+OEMID+"-"+v+".raw")
		if v == VersionB {
			p = filepath.Join(root, "var/lib/extsr/staged/oem-test-B.raw")
		}
		build(o, p)
		build(FlatcarSysext("foo", v), filepath.Join(root, "etc/flatcar/sysext", "flatcar-foo-"+v+".raw"))
	}
	sums["oem-"+OEMID+"-"+VersionB+".raw"] = sums["oem-test-B.raw"]
	delete(sums, "oem-test-B.raw")
	writeFile(t, root, "etc/extsr/persist", "user setting\n", 0o600)
	writeFile(t, root, "etc/extsr/defaults/user.conf", "mine\n", 0o644)
	writeFile(t, root, "etc/extsr/user-blob", noise(t, 256<<10), 0o644)
	writeFile(t, root, "opt/keep/data", noise(t, 64<<10), 0o644)
	writeFile(t, root, "root/notes", "root's notes\n", 0o600)
	writeFile(t, root, "home/u/blob", noise(t, 1<<20), 0o644)
	writeFile(t, root, "var/lib/extsr-user/blob", noise(t, 128<<10), 0o644)
	for i := range 1500 {
		writeFile(t, root, fmt.Sprintf("opt/drop/d%02d/f%04d", i%30, i), "x\n", 0o644)
	}
	for i := range 40 {
		writeFile(t, root, fmt.Sprintf("etc/zz-drop-%02d.conf", i), "drop\n", 0o644)
	}
	hook := strings.Replace(powercutHook, "USERFILES", strings.Join(powercutUserFiles, " "), 1)
	writeFile(t, root, "etc/extsr/check.d/95-powercut", hook, 0o755)
	// The reset removes the machine-id; a boot must not wait for
	// systemd-firstboot's prompts.
	symlink(t, root, "etc/systemd/system/systemd-firstboot.service", "/dev/null")
	return DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: oem}, sums
}

// noise returns n random bytes as a string.
func noise(t testing.TB, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return string(b)
}

// copyDisk copies the disk image (sparse) for one cut.
func copyDisk(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "disk.img")
	run(t, "cp", "--sparse=always", "--reflink=auto", src, dst)
	return dst
}

package qemu

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/test/qemu/dmlog"
)

// Power cuts, disk model (b) (docs/powercut.md): writes the guest had not
// flushed may be lost or land out of order. The update boot runs with the
// OEM and ROOT partitions behind Linux's dm-log-writes target, which logs
// every write, flush and mark to a second disk; the host then replays that
// log onto a copy of the disk as it was before the boot, up to a flush
// (everything after it lost) or up to a flush plus a seeded subset of the
// writes logged after it (the unflushed window, reordered), and boots it.
//
// The guest's device stack, set up in the initrd before the root is
// mounted (extsr-lw-setup.service):
//
//	extsr-cat  linear: OEM partition (vda6), then ROOT (vda9)
//	extsr-lw   log-writes extsr-cat /dev/vdb
//	extsr-oem  linear extsr-lw 0        (mounted at /sysroot/oem)
//	extsr-root linear extsr-lw OEMsize  (root=/dev/mapper/extsr-root)
//
// One log for both partitions keeps the order of writes across them (the
// A/B moves write to both); a flush from either file system is a flush of
// the one disk they share.

// lwOEMDev is the mapped OEM partition the recording initrd mounts.
const lwOEMDev = "/dev/mapper/extsr-oem"

// LogWritesCmdline boots slot B with the root from the mapped device.
const LogWritesCmdline = "mount.usr=PARTLABEL=USR-B mount.usrfstype=erofs mount.usrflags=ro root=/dev/mapper/extsr-root rootfstype=ext4 rw"

// lwSetup builds the stack above. dmsetup waits for udev (dracut's dm
// module brings the rules), so the mapped devices have their units when
// it returns.
const lwSetup = `#!/bin/sh
set -eu
modprobe -a dm-mod dm-log-writes || true
oem=$(readlink -f /dev/disk/by-partlabel/OEM) root=$(readlink -f /dev/disk/by-partlabel/ROOT)
read -r o </sys/class/block/${oem##*/}/size
read -r r </sys/class/block/${root##*/}/size
printf '0 %s linear %s 0\n%s %s linear %s 0\n' $o $oem $o $r $root | dmsetup create extsr-cat
echo "0 $((o + r)) log-writes /dev/mapper/extsr-cat /dev/vdb" | dmsetup create extsr-lw
dmsetup message extsr-lw 0 mark setup
echo "0 $o linear /dev/mapper/extsr-lw 0" | dmsetup create extsr-oem
echo "0 $r linear /dev/mapper/extsr-lw $o" | dmsetup create extsr-root
echo "EXTSR-LW ready oem=$o root=$r"
`

const lwSetupUnit = `[Unit]
Description=Record OEM and ROOT writes with dm-log-writes (power-cut test, disk model b)
DefaultDependencies=no
Wants=dev-disk-by\x2dpartlabel-OEM.device dev-disk-by\x2dpartlabel-ROOT.device dev-vdb.device
After=dev-disk-by\x2dpartlabel-OEM.device dev-disk-by\x2dpartlabel-ROOT.device dev-vdb.device systemd-udevd.service
Before=initrd-root-device.target sysroot.mount sysroot-oem.mount

[Service]
Type=oneshot
RemainAfterExit=yes
StandardOutput=journal+console
ExecStart=/bin/sh /usr/lib/extsr-lw-setup
`

// lwMarkUnit writes the mark name into the log, ordered by order.
func lwMarkUnit(name, order string) string {
	return `[Unit]
Description=dm-log-writes mark ` + name + `
DefaultDependencies=no
ConditionPathExists=/dev/mapper/extsr-lw
After=extsr-lw-setup.service
` + order + `

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/dmsetup message extsr-lw 0 mark ` + name + `
`
}

// lwMarks are the marks around ext-setup-root's initrd stages.
var lwMarks = [][2]string{
	{"pre-start", "After=initrd-root-fs.target\nBefore=ext-setup-root-pre.service"},
	{"pre-done", "After=ext-setup-root-pre.service\nBefore=ext-setup-root-post.service"},
	{"post-done", "After=ext-setup-root-post.service\nBefore=initrd-parse-etc.service initrd.target"},
}

// lwUnits is everything includeLogWrites adds (for the initrd's hash).
var lwUnits = strings.Join([]string{lwSetup, lwSetupUnit, fmt.Sprintf("%q", lwMarks), lwMarkUnit("x", "")}, "\n")

// includeLogWrites adds the set-up and the marks to the initrd include
// tree inc.
func includeLogWrites(t testing.TB, inc string) {
	writeFile(t, inc, "usr/lib/extsr-lw-setup", lwSetup, 0o755)
	writeFile(t, inc, "usr/lib/systemd/system/extsr-lw-setup.service", lwSetupUnit, 0o644)
	symlink(t, inc, "usr/lib/systemd/system/initrd-root-device.target.wants/extsr-lw-setup.service", "../extsr-lw-setup.service")
	for _, m := range lwMarks {
		u := "extsr-lw-mark-" + m[0] + ".service"
		writeFile(t, inc, "usr/lib/systemd/system/"+u, lwMarkUnit(m[0], m[1]), 0o644)
		symlink(t, inc, "usr/lib/systemd/system/initrd.target.wants/"+u, "../"+u)
	}
}

// lwLayout is where the logged device's two parts live in the disk image.
type lwLayout struct {
	OEMOff, OEMLen, RootOff, RootLen int64
}

// diskLayout reads the OEM and ROOT partitions of a disk image (sfdisk).
func diskLayout(t testing.TB, disk string) lwLayout {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", disk).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", disk, err)
	}
	var pt struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Name        string
				Start, Size int64
			}
		}
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		t.Fatalf("sfdisk --json %s: %v", disk, err)
	}
	ss := pt.PartitionTable.SectorSize
	if ss == 0 {
		ss = 512
	}
	var l lwLayout
	for _, p := range pt.PartitionTable.Partitions {
		switch p.Name {
		case "OEM":
			l.OEMOff, l.OEMLen = p.Start*ss, p.Size*ss
		case "ROOT":
			l.RootOff, l.RootLen = p.Start*ss, p.Size*ss
		}
	}
	if l.OEMLen == 0 || l.RootLen == 0 {
		t.Fatalf("%s: no OEM or ROOT partition: %s", disk, out)
	}
	return l
}

// limits bounds the log to the logged device.
func (l lwLayout) limits(ss uint32) dmlog.Limits {
	return dmlog.Limits{DevSectors: uint64(l.OEMLen+l.RootLen) / uint64(ss)}
}

// lwRecording is one recorded update boot.
type lwRecording struct {
	Log     string
	Layout  lwLayout
	Super   dmlog.Super
	Entries []dmlog.Entry
	Flushes []int          // positions in Entries
	Marks   map[string]int // mark -> position in Entries
	Wall    time.Duration
}

// flushesBetween returns the positions of the flushes between two marks
// ("" as the end mark: to the end of the log).
func (r *lwRecording) flushesBetween(from, to string) []int {
	lo, hi := r.Marks[from], len(r.Entries)
	if to != "" {
		hi = r.Marks[to]
	}
	var out []int
	for _, f := range r.Flushes {
		if f > lo && f < hi {
			out = append(out, f)
		}
	}
	return out
}

// lastFlushBefore returns the position of the last flush before a mark
// (-1: none).
func (r *lwRecording) lastFlushBefore(mark string) int {
	last := -1
	for _, f := range r.Flushes {
		if f < r.Marks[mark] {
			last = f
		}
	}
	return last
}

// biggestWindow returns, of the flush positions given, the one followed by
// the most entries before the next flush (-1 if none given): where the
// most writes were in flight at once.
func (r *lwRecording) biggestWindow(flushes []int) int {
	best, size := -1, -1
	for _, f := range flushes {
		n := len(r.Entries) - f - 1
		for _, g := range r.Flushes {
			if g > f {
				n = g - f - 1
				break
			}
		}
		if n > size {
			best, size = f, n
		}
	}
	return best
}

// resetWindow returns the flush whose unflushed window holds the pre
// stage's bulk of writes, the selective reset's removals: the biggest
// window from the last flush before the pre stage up to, not including,
// the pre stage's last flush (the stage ends with a sync, whose window
// holds what came after the reset). The pre stage flushes once or twice,
// as ext4's commit timer falls.
func (r *lwRecording) resetWindow() int {
	pre := r.flushesBetween("pre-start", "pre-done")
	cand := []int{r.lastFlushBefore("pre-start")}
	if len(pre) > 1 {
		cand = append(cand, pre[:len(pre)-1]...)
	}
	return r.biggestWindow(cand)
}

// phaseCounts sums up, per phase, the log's writes, FUA writes and flushes.
func (r *lwRecording) phaseCounts() string {
	type c struct{ w, fua, fl int }
	var order []string
	n := map[string]*c{}
	for i, e := range r.Entries {
		ph := r.phaseOf(i)
		if n[ph] == nil {
			n[ph] = &c{}
			order = append(order, ph)
		}
		switch {
		case e.IsFlush():
			n[ph].fl++
		case e.Flags&dmlog.FUA != 0:
			n[ph].fua++
		case e.Flags&dmlog.Mark == 0:
			n[ph].w++
		}
	}
	var out []string
	for _, ph := range order {
		out = append(out, fmt.Sprintf("%s: %d writes, %d FUA, %d flushes", ph, n[ph].w, n[ph].fua, n[ph].fl))
	}
	return strings.Join(out, "; ")
}

// phaseOf names the part of the boot a log position is in.
func (r *lwRecording) phaseOf(pos int) string {
	switch {
	case pos < r.Marks["pre-start"]:
		return "initrd, before ext-setup-root"
	case pos < r.Marks["pre-done"]:
		return "pre stage"
	case pos < r.Marks["post-done"]:
		return "post stage"
	}
	return "booted system (late refresh, journal, shutdown)"
}

// segments maps the logged device onto files: oem and root hold the two
// partitions at oemOff and rootOff.
func (l lwLayout) segments(oem *os.File, oemOff int64, root *os.File, rootOff int64) dmlog.Segments {
	return dmlog.Segments{{Len: l.OEMLen, W: oem, Off: oemOff}, {Len: l.RootLen, W: root, Off: rootOff}}
}

// replayDisk returns a copy of src (the disk before the recorded boot)
// with the plan's writes of the log replayed onto it.
func (r *lwRecording) replayDisk(t *testing.T, src string, p dmlog.Plan) (string, dmlog.Stats) {
	t.Helper()
	dst := copyDisk(t, src)
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lf, err := os.Open(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	st, err := dmlog.Replay(bufio.NewReaderSize(lf, 1<<20), r.Layout.limits(r.Super.SectorSize), r.Layout.segments(f, r.Layout.OEMOff, f, r.Layout.RootOff), p)
	if err != nil {
		t.Fatalf("replay %s onto %s: %v", r.Log, dst, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return dst, st
}

// fsckResult is the host check of one replayed flush.
type fsckResult struct {
	Pos    int
	Errors []string
}

// fsckEveryFlush replays the log once onto copies of the OEM and ROOT
// partitions of src and, at every flush position in want, checks both
// file systems the way the next mount would find them: a scratch copy
// gets its journal replayed (e2fsck -E journal_only), then e2fsck -fn must
// find nothing. It never touches src.
func (r *lwRecording) fsckEveryFlush(t *testing.T, src string, want map[int]bool) []fsckResult {
	t.Helper()
	dir := t.TempDir()
	oem, root := filepath.Join(dir, "oem.img"), filepath.Join(dir, "root.img")
	l := r.Layout
	extract := func(dst string, off, n int64) *os.File {
		run(t, "dd", "if="+src, "of="+dst, "bs=1M", "iflag=skip_bytes,count_bytes", fmt.Sprintf("skip=%d", off), fmt.Sprintf("count=%d", n), "conv=sparse", "status=none")
		f, err := os.OpenFile(dst, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	of, rf := extract(oem, l.OEMOff, l.OEMLen), extract(root, l.RootOff, l.RootLen)
	defer of.Close()
	defer rf.Close()
	lf, err := os.Open(r.Log)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	pos := map[uint64]int{}
	last := uint64(0)
	for p := range want {
		pos[r.Entries[p].Index] = p
		last = max(last, r.Entries[p].Index)
	}
	var out []fsckResult
	_, err = dmlog.ReplayEach(bufio.NewReaderSize(lf, 1<<20), l.limits(r.Super.SectorSize), l.segments(of, 0, rf, 0), dmlog.Upto(last), func(e dmlog.Entry) error {
		p, ok := pos[e.Index]
		if !ok {
			return nil
		}
		res := fsckResult{Pos: p}
		for _, part := range []string{oem, root} {
			if msg := fsckCopy(t, part, filepath.Join(dir, "scratch.img")); msg != "" {
				res.Errors = append(res.Errors, filepath.Base(part)+": "+msg)
			}
		}
		out = append(out, res)
		return nil
	})
	if err != nil {
		t.Fatalf("replay %s: %v", r.Log, err)
	}
	return out
}

// fsckUnflushed replays, for each flush position, the unflushed-window
// plan (dmlog.Unflushed with seed) onto fresh copies of the OEM and ROOT
// partitions of src and checks both with e2fsck as fsckEveryFlush does.
func (r *lwRecording) fsckUnflushed(t *testing.T, src string, flushes []int, seed uint64) []fsckResult {
	t.Helper()
	dir := t.TempDir()
	l := r.Layout
	var out []fsckResult
	for _, pos := range flushes {
		p, _, _ := dmlog.Unflushed(r.Entries, pos, seed)
		parts := map[string]*os.File{}
		for _, part := range []struct {
			name     string
			off, len int64
		}{{"oem.img", l.OEMOff, l.OEMLen}, {"root.img", l.RootOff, l.RootLen}} {
			dst := filepath.Join(dir, part.name)
			os.Remove(dst)
			run(t, "dd", "if="+src, "of="+dst, "bs=1M", "iflag=skip_bytes,count_bytes", fmt.Sprintf("skip=%d", part.off), fmt.Sprintf("count=%d", part.len), "conv=sparse", "status=none")
			f, err := os.OpenFile(dst, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			parts[part.name] = f
		}
		lf, err := os.Open(r.Log)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dmlog.Replay(bufio.NewReaderSize(lf, 1<<20), l.limits(r.Super.SectorSize), l.segments(parts["oem.img"], 0, parts["root.img"], 0), p)
		lf.Close()
		for _, f := range parts {
			f.Close()
		}
		if err != nil {
			t.Fatalf("replay %s: %v", r.Log, err)
		}
		res := fsckResult{Pos: pos}
		for _, name := range []string{"oem.img", "root.img"} {
			if msg := fsckCopy(t, filepath.Join(dir, name), filepath.Join(dir, "scratch.img")); msg != "" {
				res.Errors = append(res.Errors, name+": "+msg)
			}
		}
		out = append(out, res)
	}
	return out
}

// fsckCopy checks a copy of the file system image img: "" when clean after
// its journal is replayed, else e2fsck's complaint.
func fsckCopy(t *testing.T, img, scratch string) string {
	t.Helper()
	run(t, "cp", "--sparse=always", img, scratch)
	defer os.Remove(scratch)
	// Exit 0 or 1 (journal replayed): fine; more is an error.
	out, err := exec.Command("e2fsck", "-E", "journal_only", "-y", scratch).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() > 1) {
		return fmt.Sprintf("journal replay: %v: %s", err, strings.TrimSpace(string(out)))
	}
	out, err = exec.Command("e2fsck", "-fn", scratch).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("e2fsck -fn: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return ""
}

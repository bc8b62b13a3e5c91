package qemu

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/test/qemu/dmlog"
)

// lwReplay is one replayed disk to boot: the log up to the flush at
// position Flush of the recording, plus (Unflushed) a seeded subset of the
// writes logged after it.
type lwReplay struct {
	Name      string
	Flush     int
	Unflushed bool
}

// TestQEMUPowerCutLogWrites is make test's sample of disk model (b): the
// update boot recorded with dm-log-writes (powercut_dmlog.go), the file
// systems checked on the host with e2fsck at every flush of the log, and,
// for every flush from the last one before the pre stage to the end of the
// post stage, with the unflushed window's seeded subset too; then two
// replayed disks booted (recovery boot and third boot, the checks of model
// (a)). The reset's cut is the unflushed window that holds the selective
// reset's 1,588 removals (resetWindow). The post stage (A/B
// moves, link flips, the replacement of the merge) flushes several times:
// its cut is the flush at a third of them (everything after lost, between
// the two A/B moves). The unflushed window of the /etc replacement (after
// the flush at two thirds) is booted by make soak-dmlog only, with the
// other flushes: two boots fewer keep CI inside its budget.
func TestQEMUPowerCutLogWrites(t *testing.T) {
	in := RequireInputs(t)
	seed := powercutSeed(t)
	m, before, images := powercutSetup(t, in, nil)
	rec := recordUpdate(t, in, m, before, images)
	post := rec.flushesBetween("pre-done", "post-done")
	preStart := rec.lastFlushBefore("pre-start")
	if preStart < 0 || len(post) < 2 {
		t.Fatalf("too few flushes to cut inside ext-setup-root's stages (none before the pre stage: %v; post stage %d)", preStart < 0, len(post))
	}
	lwFsck(t, rec, m.disk, rec.Flushes)
	lwFsckUnflushed(t, rec, m.disk, append([]int{preStart}, rec.flushesBetween("pre-start", "post-done")...), seed)
	reset := rec.resetWindow()
	runReplays(t, in, m, rec, before, images, seed, []lwReplay{
		{"reset-unflushed", reset, true},
		{"post-third", post[len(post)/3], false},
	}, "")
}

// TestQEMUPowerCutLogWritesSoak is make soak-dmlog's long run of model
// (b): every flush of the log is checked with e2fsck, both cut at the
// flush and with the unflushed window's seeded subset after it, and
// EXT_SETUP_ROOT_DMLOG_SOAK replayed disks spread evenly over the flushes
// from the last one before the pre stage to the end of the log (the
// booted system's late refresh included), alternately cut at the flush
// and with the unflushed window's subset, are booted; the table goes to
// out/powercut-dmlog-soak.md.
func TestQEMUPowerCutLogWritesSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("EXT_SETUP_ROOT_DMLOG_SOAK"))
	if n <= 0 {
		t.Skip("long run: set EXT_SETUP_ROOT_DMLOG_SOAK=N (make soak-dmlog)")
	}
	in := RequireInputs(t)
	seed := powercutSeed(t)
	m, before, images := powercutSetup(t, in, nil)
	rec := recordUpdate(t, in, m, before, images)
	// From the last flush before the pre stage: its unflushed window holds
	// the start of the pre stage.
	var all []int
	for _, f := range rec.Flushes {
		if f >= rec.lastFlushBefore("pre-start") {
			all = append(all, f)
		}
	}
	lwFsck(t, rec, m.disk, rec.Flushes)
	lwFsckUnflushed(t, rec, m.disk, rec.Flushes, seed)
	var plan []lwReplay
	for i := range min(n, len(all)) {
		f := all[i*len(all)/min(n, len(all))]
		plan = append(plan, lwReplay{fmt.Sprintf("flush-%d", f), f, i%2 == 1})
	}
	runReplays(t, in, m, rec, before, images, seed, plan, filepath.Join(repoRoot(t), "out", "powercut-dmlog-soak.md"))
}

// recordUpdate boots slot B of a copy of m's disk once, uncut, with the
// recording initrd and an empty log disk, checks that the update reached
// the state checkRecovered wants, and scans the log.
func recordUpdate(t *testing.T, in *Inputs, m *Machine, before, images map[string]string) *lwRecording {
	t.Helper()
	initrd := InitrdFor(t, in, InitrdSpec{Ours: true, LogWrites: true})
	disk := copyDisk(t, m.disk)
	log := filepath.Join(t.TempDir(), "log.img")
	run(t, "truncate", "-s", "4G", log)
	rep := Boot(t, in, BootSpec{Initrd: initrd, Disk: disk, Drives: []string{log}, Timeout: m.Timeout,
		Cmdline: LogWritesCmdline + " " + CutCmdline + " extsr.state"})
	if !rep.Done {
		t.Fatalf("recorded update boot: the reporter did not finish; last lines:\n%s\nlog %s", rep.Tail(60), rep.LogPath)
	}
	checkRecovered(t, rep, before, images)
	if t.Failed() {
		t.Fatalf("recorded update boot did not reach the updated state; log %s", rep.LogPath)
	}
	rec := &lwRecording{Log: log, Layout: diskLayout(t, m.disk), Marks: map[string]int{}, Wall: rep.Wall}
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The super block's sector size is 512 here (virtio's logical block);
	// the limit is checked against it again by the reader.
	rec.Super, rec.Entries, err = dmlog.Scan(bufio.NewReaderSize(f, 1<<20), rec.Layout.limits(512))
	if err != nil {
		t.Fatalf("scan %s: %v (boot log %s)", log, err, rep.LogPath)
	}
	rec.Flushes = dmlog.Flushes(rec.Entries)
	for i, e := range rec.Entries {
		if e.Flags&dmlog.Mark != 0 {
			rec.Marks[e.Mark] = i
		}
	}
	for _, mk := range lwMarks {
		if _, ok := rec.Marks[mk[0]]; !ok {
			t.Fatalf("log %s: no mark %q (marks %v); boot log %s", log, mk[0], rec.Marks, rep.LogPath)
		}
	}
	t.Logf("recorded update boot: %.0f s wall; log: %d entries, %d flushes, marks at %v; log %s",
		rep.Wall.Seconds(), len(rec.Entries), len(rec.Flushes), rec.Marks, rep.LogPath)
	t.Logf("log by phase: %s", rec.phaseCounts())
	return rec
}

// powercutSeed is the run's seed (EXT_SETUP_ROOT_POWERCUT_SEED repeats it).
func powercutSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EXT_SETUP_ROOT_POWERCUT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (EXT_SETUP_ROOT_POWERCUT_SEED repeats it)", seed)
	return seed
}

// lwFsck checks the file systems at every flush position in flushes.
func lwFsck(t *testing.T, rec *lwRecording, disk string, flushes []int) {
	t.Helper()
	want := map[int]bool{}
	for _, f := range flushes {
		want[f] = true
	}
	start := time.Now()
	res := rec.fsckEveryFlush(t, disk, want)
	bad := 0
	for _, r := range res {
		if len(r.Errors) > 0 {
			bad++
			t.Errorf("flush at log entry %d (%s): %s", rec.Entries[r.Pos].Index, rec.phaseOf(r.Pos), strings.Join(r.Errors, "; "))
		}
	}
	if len(res) != len(want) {
		t.Errorf("checked %d flushes, wanted %d", len(res), len(want))
	}
	t.Logf("e2fsck of OEM and ROOT after %d flushes: %d clean, %d not, %.0f s", len(res), len(res)-bad, bad, time.Since(start).Seconds())
}

// lwFsckUnflushed checks the file systems with the unflushed window's
// seeded subset after each flush position in flushes.
func lwFsckUnflushed(t *testing.T, rec *lwRecording, disk string, flushes []int, seed uint64) {
	t.Helper()
	start := time.Now()
	bad := 0
	res := rec.fsckUnflushed(t, disk, flushes, seed)
	for _, r := range res {
		if len(r.Errors) > 0 {
			bad++
			t.Errorf("unflushed window after the flush at log entry %d (%s): %s", rec.Entries[r.Pos].Index, rec.phaseOf(r.Pos), strings.Join(r.Errors, "; "))
		}
	}
	t.Logf("e2fsck of OEM and ROOT with the unflushed window's seeded subset after each of %d flushes: %d clean, %d not, %.0f s", len(res), len(res)-bad, bad, time.Since(start).Seconds())
}

// runReplays replays and boots each plan entry on its own copy of m's disk.
func runReplays(t *testing.T, in *Inputs, m *Machine, rec *lwRecording, before, images map[string]string, seed uint64, plan []lwReplay, table string) {
	var rows []string
	for i, r := range plan {
		p := dmlog.Upto(rec.Entries[r.Flush].Index)
		what := "all up to the flush"
		if r.Unflushed {
			var kept, window int
			p, kept, window = dmlog.Unflushed(rec.Entries, r.Flush, seed)
			what = fmt.Sprintf("flush + %d of the %d entries after it", kept, window)
		}
		var walls []string
		var st dmlog.Stats
		ok := t.Run(fmt.Sprintf("%02d-%s", i+1, r.Name), func(t *testing.T) {
			var disk string
			disk, st = rec.replayDisk(t, m.disk, p)
			t.Logf("replayed up to log entry %d (%s, %s): %d writes, %d discards, %d KiB", rec.Entries[r.Flush].Index, rec.phaseOf(r.Flush), what, st.Writes, st.Discards, st.Bytes>>10)
			cm := &Machine{t: t, in: in, initrd: m.initrd, disk: disk, Timeout: m.Timeout}
			walls = recoverAndRecheck(t, cm, before, &cutScenario{images: images}, CutCmdline, "replay "+r.Name, nil)
		})
		rows = append(rows, fmt.Sprintf("| %d | %d | %s | %s | %d | %s | %s |", i+1, rec.Entries[r.Flush].Index, rec.phaseOf(r.Flush), what, st.Writes,
			strings.Join(walls, " / "), map[bool]string{true: "pass", false: "FAIL"}[ok]))
		if table != "" {
			writeReplayTable(t, table, seed, rec, rows, len(plan))
		}
	}
}

// writeReplayTable writes the soak's results table (markdown).
func writeReplayTable(t *testing.T, path string, seed uint64, rec *lwRecording, rows []string, planned int) {
	intro := fmt.Sprintf("# Power-cut soak, disk model (b)\n\n%s, seed %d, log of %d entries and %d flushes, %d of %d replayed disks booted. Boots: recovery / third.\n\n",
		time.Now().UTC().Format(time.RFC3339), seed, len(rec.Entries), len(rec.Flushes), len(rows), planned)
	writeMarkdownTable(t, path, intro, "| # | flush (log entry) | phase | replayed | writes | boots (wall) | result |\n|---|---|---|---|---|---|---|\n", rows)
}

// TestLogWritesRecordingHelpers checks the choice of flushes on a made-up
// log (no QEMU): marks, phases, windows.
func TestLogWritesRecordingHelpers(t *testing.T) {
	// 0 F, 1 w, 2 mark pre-start, 3 w, 4 F, 5..9 w, 10 F, 11 mark pre-done, 12 F, 13 mark post-done, 14 w, 15 F
	kinds := "FwMwFwwwwwFMFMwF"
	rec := &lwRecording{Marks: map[string]int{}}
	marks := []string{"pre-start", "pre-done", "post-done"}
	for i, k := range kinds {
		e := dmlog.Entry{Index: uint64(i), Sectors: 1}
		switch k {
		case 'F':
			e.Flags, e.Sectors = dmlog.Flush, 0
		case 'M':
			e.Flags, e.Sectors, e.Mark = dmlog.Mark, 0, marks[0]
			rec.Marks[marks[0]] = i
			marks = marks[1:]
		}
		rec.Entries = append(rec.Entries, e)
	}
	rec.Flushes = dmlog.Flushes(rec.Entries)
	if got := rec.lastFlushBefore("pre-start"); got != 0 {
		t.Errorf("last flush before pre-start: %d, want 0", got)
	}
	if got := rec.flushesBetween("pre-start", "pre-done"); fmt.Sprint(got) != "[4 10]" {
		t.Errorf("flushes of the pre stage: %v, want [4 10]", got)
	}
	if got := rec.flushesBetween("pre-done", ""); fmt.Sprint(got) != "[12 15]" {
		t.Errorf("flushes after pre-done: %v, want [12 15]", got)
	}
	if got := rec.biggestWindow([]int{0, 4, 10}); got != 4 {
		t.Errorf("biggest window: after %d, want 4 (5 writes)", got)
	}
	if got := rec.resetWindow(); got != 4 {
		t.Errorf("reset window: after %d, want 4", got)
	}
	if got := rec.phaseOf(5); got != "pre stage" {
		t.Errorf("phase of 5: %q", got)
	}
}

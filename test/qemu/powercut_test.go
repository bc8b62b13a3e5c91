package qemu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestQEMUPowerCut is make test's sample of power cuts (disk model (a),
// see powercut.go): one boot of slot A prepares the update, then for each
// cut a copy of that disk boots slot B and loses its power at the cut
// point, and boots twice more. Cuts: inside the prepare step's selective
// reset, inside the move of the new OEM image to the OEM partition, at the
// second link flip, inside the post stage's replacement of /etc.
func TestQEMUPowerCut(t *testing.T) {
	in := RequireInputs(t)
	var cuts []CutPoint
	for _, n := range []string{"reset", "move-new-to-oem", "link-2", "post-replace"} {
		c := CutPointNamed(t, n)
		if c.Kind == "ab-move" {
			// A move of the 6 MiB image takes 100-200 ms under TCG: a
			// short delay keeps the sample's cut inside it.
			c.MaxDelay = 40 * time.Millisecond
		}
		cuts = append(cuts, c)
	}
	// The sample must cut inside prepare and inside an A/B move.
	runPowerCuts(t, in, cuts, "", map[string]bool{"reset": true, "move-new-to-oem": true})
}

// TestQEMUPowerCutSoak runs EXT_SETUP_ROOT_POWERCUT_SOAK cuts (make soak:
// 57, the catalogue three times), cycling through the whole catalogue, or
// through the points named in EXT_SETUP_ROOT_POWERCUT_POINTS (comma
// separated), with random delays, and writes the results table to
// out/powercut-soak.md. It is a long run, only on request.
func TestQEMUPowerCutSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("EXT_SETUP_ROOT_POWERCUT_SOAK"))
	if n <= 0 {
		t.Skip("long run: set EXT_SETUP_ROOT_POWERCUT_SOAK=N (make soak)")
	}
	points := CutPoints
	if names := os.Getenv("EXT_SETUP_ROOT_POWERCUT_POINTS"); names != "" {
		points = nil
		for _, name := range strings.Split(names, ",") {
			points = append(points, CutPointNamed(t, strings.TrimSpace(name)))
		}
	}
	in := RequireInputs(t)
	var cuts []CutPoint
	for i := range n {
		cuts = append(cuts, points[i%len(points)])
	}
	runPowerCuts(t, in, cuts, filepath.Join(repoRoot(t), "out", "powercut-soak.md"), nil)
}

// runPowerCuts boots slot A once (the setup step and the checksums before
// the cuts), then runs each cut on its own copy of that disk: the cut boot
// of slot B, the recovery boot, and a third boot that must change nothing.
// With table set, it writes one row per cut there. A cut named in inside
// fails unless the power went before its operation logged its end.
func runPowerCuts(t *testing.T, in *Inputs, cuts []CutPoint, table string, inside map[string]bool) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EXT_SETUP_ROOT_POWERCUT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("delays drawn with seed %d (EXT_SETUP_ROOT_POWERCUT_SEED repeats them)", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))

	fetching := slices.ContainsFunc(cuts, CutPoint.fetches)
	var extra func(*testing.T, string)
	if fetching {
		extra = powercutFetchFiles
	}
	m, before, images := powercutSetup(t, in, extra)

	plain, fetched := &cutScenario{images: images}, (*cutScenario)(nil)
	if fetching {
		fetched = fetchScenario(t, images)
	}
	var rows []string
	for i, c := range cuts {
		sc := plain
		if c.fetches() {
			sc = fetched
		}
		delay := time.Duration(rnd.Int64N(int64(c.MaxDelay) + 1))
		res := CutResult{Point: c, Delay: delay}
		var walls []string
		ok := t.Run(fmt.Sprintf("%02d-%s", i+1, c.Name), func(t *testing.T) {
			walls = powerCut(t, in, m, &res, before, sc, inside[c.Name])
		})
		result := map[bool]string{true: "pass", false: "FAIL"}[ok]
		if res.Note != "" {
			result += "; " + res.Note
		}
		rows = append(rows, fmt.Sprintf("| %d | %s | %s | %d | `%s` | %v | `%s` | %s | %s |", i+1, c.Name, c.Kind,
			delay.Milliseconds(), res.OpLine, res.Inside, res.LastOp, strings.Join(walls, " / "), result))
		// Rewritten after every cut: a soak stopped early still leaves the
		// rows of the cuts it finished.
		if table != "" {
			writeCutTable(t, table, seed, rows, len(cuts))
		}
	}
}

// powercutSetup builds the scenario's disk (extra adds files to its root,
// nil: none) and boots slot A once: the setup step (the updater and the
// user, see powercutHook) and the user files' checksums before any cut.
// Both disk models start from m's disk. m boots its own copy of the
// initramfs (privateInitrd).
func powercutSetup(t *testing.T, in *Inputs, extra func(*testing.T, string)) (m *Machine, before, images map[string]string) {
	spec, images := powercutDisk(t, in, extra)
	m = NewMachine(t, in, spec)
	m.Timeout = 8 * time.Minute
	m.initrd = privateInitrd(t, m.initrd)
	rep := m.Boot("A", "extsr.step=setup "+CutCmdline)
	checkSlotImages(t, rep, VersionA)
	if rep.Get("setup") != "done" {
		t.Fatalf("slot A boot: the setup step did not run; log %s", rep.LogPath)
	}
	before = userSums(rep)
	for _, f := range powercutUserFiles {
		if before[f] == "" {
			t.Fatalf("slot A boot: no checksum of %s: %q", f, rep.All("usersum"))
		}
	}
	if t.Failed() {
		t.Fatalf("slot A boot failed; log %s", rep.LogPath)
	}
	return m, before, images
}

// privateInitrd copies the cached initramfs into the test's own directory:
// the cache keeps only the newest ten (prune in initrd.go), and the other
// QEMU test processes on the machine build new ones while a soak runs for
// hours; a run that lost its initramfs failed every later boot.
func privateInitrd(t *testing.T, p string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(p))
	run(t, "cp", p, dst)
	return dst
}

// powerCut runs one cut of scenario sc on a copy of m's disk and returns
// the boots' wall times.
func powerCut(t *testing.T, in *Inputs, m *Machine, res *CutResult, before map[string]string, sc *cutScenario, mustBeInside bool) []string {
	c := res.Point
	cm := &Machine{t: t, in: in, initrd: m.initrd, disk: copyDisk(t, m.disk), Timeout: m.Timeout, NIC: sc.nic}
	if sc.prepare != nil {
		sc.prepare(t, cm.disk)
	}
	extra := strings.TrimSpace(CutCmdline + " " + sc.cmdline)
	asked := sc.asked()
	rep := Boot(t, in, BootSpec{Initrd: cm.initrd, Disk: cm.disk, Timeout: cm.Timeout, NIC: cm.NIC,
		Cmdline: Cmdline("B") + " " + extra, OnLine: cutWatcher(c, res.Delay)})
	walls := []string{fmt.Sprintf("%.0f s", rep.Wall.Seconds())}
	analyseCut(rep, res)
	if !rep.Cut {
		t.Fatalf("cut %s (%s #%d of /%s/) never reached: the guest printed no such operation line (done=%v); log %s",
			c.Name, c.Event, c.N, c.Op, rep.Done, rep.LogPath)
	}
	if mustBeInside && !res.Inside {
		t.Errorf("cut %s: the operation `%s` had ended before the power went; this sample needs a cut inside it", c.Name, res.OpLine)
	}
	t.Logf("cut %s: power cut %v after `%s` (inside the operation: %v); last operation on the console: `%s`; log %s",
		c.Name, res.Delay.Round(time.Millisecond), res.OpLine, res.Inside, res.LastOp, rep.LogPath)

	cutAsked := sc.asked()
	if sc.requests != nil && cutAsked == asked {
		t.Errorf("cut %s: the cut boot never asked the server for the missing image", c.Name)
	}
	return append(walls, recoverAndRecheck(t, cm, before, sc, extra, "cut "+c.Name, res)...)
}

// recoverAndRecheck boots slot B of cm's disk (after a cut or a replayed
// log; extra is the kernel command line added to every boot) twice: the
// recovery boot must reach the updated state (checkRecovered) and the
// third boot must change nothing (same state digest) nor ask sc's server
// again. With a server, res.Note says whether the recovery downloaded
// again. It returns the two boots' wall times.
func recoverAndRecheck(t *testing.T, cm *Machine, before map[string]string, sc *cutScenario, extra, what string, res *CutResult) []string {
	var walls []string
	cutAsked := sc.asked()
	rep2 := cm.Boot("B", extra+" extsr.state")
	walls = append(walls, fmt.Sprintf("%.0f s", rep2.Wall.Seconds()))
	checkRecovered(t, rep2, before, sc.images)
	recAsked := sc.asked()
	if sc.requests != nil {
		res.Note = map[bool]string{true: "recovery downloaded again", false: "recovery used the placed image"}[recAsked > cutAsked]
		t.Logf("%s: %s (%d requests)", what, res.Note, recAsked-cutAsked)
	}
	if t.Failed() {
		t.Fatalf("recovery boot after %s failed; log %s", what, rep2.LogPath)
	}
	rep3 := cm.Boot("B", extra+" extsr.state")
	walls = append(walls, fmt.Sprintf("%.0f s", rep3.Wall.Seconds()))
	checkRecovered(t, rep3, before, sc.images)
	if n := sc.asked(); n != recAsked {
		t.Errorf("the third boot asked the server again (%q): the image was not in place after the recovery", sc.requests()[recAsked:])
	}
	if a, b := rep2.Get("state_sum"), rep3.Get("state_sum"); a == "" || a != b {
		t.Errorf("the third boot changed the disk (state %q -> %q):\n%s", a, b, stateDiff(rep2.All("state"), rep3.All("state")))
	}
	return walls
}

// stateDiff lists the entries of the state digest only one side has.
func stateDiff(a, b []string) string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range l {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, x := range a {
		if !mb[x] {
			out = append(out, "- "+x)
		}
	}
	for _, x := range b {
		if !ma[x] {
			out = append(out, "+ "+x)
		}
	}
	return strings.Join(out, "\n")
}

// writeCutTable writes the soak's results table (markdown).
func writeCutTable(t *testing.T, path string, seed uint64, rows []string, planned int) {
	intro := fmt.Sprintf("# Power-cut soak, disk model (a)\n\n%s, seed %d, %d of %d cuts done. Boots: cut / recovery / third.\n\n", time.Now().UTC().Format(time.RFC3339), seed, len(rows), planned)
	writeMarkdownTable(t, path, intro, "| # | cut point | kind | delay ms | triggering operation | cut inside it | last operation before the cut | boots (wall) | result |\n|---|---|---|---|---|---|---|---|---|\n", rows)
}

// writeMarkdownTable writes intro, the table's header and one line per
// row to path (the soaks' results tables), creating its directory.
func writeMarkdownTable(t *testing.T, path, intro, header string, rows []string) {
	var b strings.Builder
	b.WriteString(intro)
	b.WriteString(header)
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("results table: %s", path)
}

// userSums returns path -> checksum line of the reporter's usersum lines.
func userSums(rep *Report) map[string]string {
	out := map[string]string{}
	for _, l := range rep.All("usersum") {
		f := strings.Fields(l)
		if len(f) == 2 {
			out[f[1]] = f[0]
		}
	}
	return out
}

// checkRecovered checks the boot after a cut: slot B reached multi-user
// with B's images linked and merged, /etc merged with B's default
// confext, the user files as before the cut, the images intact and where
// the update puts them, the prepare step done, no leftovers.
func checkRecovered(t *testing.T, rep *Report, before map[string]string, images map[string]string) {
	t.Helper()
	checkSlotImages(t, rep, VersionB)
	// The reporter is ordered after multi-user.target, so it runs once
	// multi-user is reached; its own job keeps the state "starting".
	if st := rep.Get("system_state"); st != "running" && st != "starting" {
		t.Errorf("system state %q, want starting (the reporter's own job) or running", st)
	}
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext version="+VersionB) {
		t.Errorf("/etc not merged with slot B's default confext: %q", rep.All("file"))
	}
	got := userSums(rep)
	for _, f := range powercutUserFiles {
		if before[f] == "" || got[f] != before[f] {
			t.Errorf("user file %s: checksum %q, before the cut %q", f, got[f], before[f])
		}
	}
	want := map[string]bool{
		"/oem/sysext/oem-" + OEMID + "-" + VersionB + ".raw":             true,
		"/etc/flatcar/oem-sysext/oem-" + OEMID + "-" + VersionA + ".raw": true,
		"/etc/flatcar/sysext/flatcar-foo-" + VersionA + ".raw":           true,
		"/etc/flatcar/sysext/flatcar-foo-" + VersionB + ".raw":           true,
	}
	for _, l := range rep.All("imagesum") {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Errorf("bad imagesum line %q", l)
			continue
		}
		if !want[f[1]] {
			t.Errorf("image %s: not where the update puts it (a half-moved or duplicate copy)", f[1])
			continue
		}
		delete(want, f[1])
		if images[filepath.Base(f[1])] != f[0] {
			t.Errorf("image %s: checksum %s, built as %s", f[1], f[0], images[filepath.Base(f[1])])
		}
	}
	for p := range want {
		t.Errorf("image %s missing", p)
	}
	if d := rep.Get("drop"); d != "0" {
		t.Errorf("the selective reset left %s of /opt/drop, /etc/zz-drop-*, /selective-os-reset", d)
	}
	if d := rep.Get("dup"); d != "" {
		t.Errorf("copies identical to the defaults left in the real /etc: %s", d)
	}
	recorded := map[string]bool{}
	for _, w := range rep.All("work_dir") {
		recorded["/"+strings.TrimPrefix(w, "/")] = true
	}
	for _, l := range rep.All("leftover") {
		if !recorded[l] {
			t.Errorf("leftover after the recovery boot: %s (work dirs in use: %q)", l, rep.All("work_dir"))
		}
	}
	if e := rep.All("error"); len(e) > 0 {
		t.Errorf("reporter hook: %q", e)
	}
}

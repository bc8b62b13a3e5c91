package systemd262

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// workDirs lists the work dirs of /etc in root (systemd's plain name and
// ext-setup-root's per-run ones).
func workDirs(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".systemd-etc-workdir") {
			out = append(out, e.Name())
		}
	}
	return out
}

// overlaysOn counts the overlay mounts whose mount point is exactly dir.
func overlaysOn(dir string) int {
	n := 0
	for _, m := range MountsAt(dir) {
		if m.MountPoint == dir && m.FSType == "overlay" {
			n++
		}
	}
	return n
}

// TestConcurrentWithSystemd (issue 8 item 1, ours + systemd 262): 60 rounds
// of our `--always-refresh=yes refresh` racing systemd-confext 262's, our
// start spread over systemd's run time. systemd takes no lock (see
// extension/lock.go), so nothing can make ITS calls wait for ours; what
// must hold is that ours never fail, never stack an overlay over another
// merge and never leak a work dir: the mount-id re-check before attaching
// and the re-inspection of a hierarchy that changed while staging make our
// call start over instead. Before that (main 2a202a3), ours failed 5 times
// in 60 rounds, left two overlays stacked on /etc and 5 work dirs behind.
// systemd's own failures are logged and counted, not asserted: in a race
// with a merge that appears under it, systemd 262 fails with "Unable to
// find a suitable workdir location ... different filesystem".
//
// systemd's refresh is not atomic either: it unmounts the old merge, builds
// the new one and bind-mounts it over the hierarchy, and its unmerge moves
// the hierarchy's sub-mounts aside to put them on the new merge. When our
// whole call lands inside those windows (ours takes milliseconds), two
// states follow that systemd alone produces, with its merge on top: its
// overlay stacked over ours, or its overlay carrying our merge's metadata
// bind (so systemd no longer recognizes it). Under load this happened in
// about 1 of 50 rounds (CI, 2026-12-07). Those rounds are counted, the top
// must be systemd's, and our next refresh on its own must repair the
// hierarchy: one merge that systemd's rule recognizes.
func TestConcurrentWithSystemd(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)
	f := Fixture{Layout: LayoutSymlink, Images: StandardImages()}
	r := newRoot(t, e, f)
	etc := filepath.Join(r.Host, "etc")
	env := append([]string{"EXT_SETUP_ROOT_LOG=stderr"}, r.OurEnv...)
	if res := ours(t, bin, env, "confext", "--root="+r.Host, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("merge: %s", res)
	}
	defer UnmountBelow(etc)
	var sdFail, retries, stacked, covered int
	sdTime := 100 * time.Millisecond
	for round := 0; round < 60; round++ {
		var wg sync.WaitGroup
		var a, b Result
		wg.Add(2)
		// Spread our start over systemd's run time (measured in the last
		// round), so that our whole call lands in every phase of systemd's
		// refresh (inspection, building, unmerge, move) over the rounds.
		delay := time.Duration(round%12) * sdTime / 12
		go func() {
			defer wg.Done()
			time.Sleep(delay)
			a, _ = Ours(bin, env, "confext", "--root="+r.Host, "--mutable=yes", "--always-refresh=yes", "refresh")
		}()
		go func() {
			defer wg.Done()
			b, _ = e.Confext(nil, "--root="+r.In, "--mutable=yes", "--always-refresh=yes", "refresh")
		}()
		wg.Wait()
		sdTime = b.Elapsed
		retries += strings.Count(a.Output, "starting over")
		if a.ExitCode != 0 {
			t.Errorf("round %d: our refresh failed: %s", round, a)
		}
		if b.ExitCode != 0 {
			sdFail++
			t.Logf("round %d: systemd's refresh failed: %s", round, b)
		}
		if n := overlaysOn(etc); n != 1 || !recognized(etc) {
			top := topOverlay(etc)
			if top == nil || !systemdsMerge(*top) {
				t.Fatalf("round %d: %d overlays on /etc, recognized %t, and the top one is not systemd's; work dirs %v\n%s", round, n, recognized(etc), workDirs(t, r.Host), hierDiag(etc, ".systemd-confext"))
			}
			if n > 1 {
				stacked++
			} else {
				covered++
			}
			t.Logf("round %d: systemd's merge left on top of another (%d overlays, recognized %t):\n%s", round, n, recognized(etc), hierDiag(etc, ".systemd-confext"))
			res := ours(t, bin, env, "confext", "--root="+r.Host, "--mutable=yes", "refresh")
			if res.ExitCode != 0 {
				t.Fatalf("round %d: our repairing refresh failed: %s", round, res)
			}
			if n := overlaysOn(etc); n != 1 || !recognized(etc) {
				t.Fatalf("round %d: our refresh did not repair /etc: %d overlays, recognized %t\n%s", round, n, recognized(etc), hierDiag(etc, ".systemd-confext"))
			}
		}
	}
	t.Logf("60 rounds: our calls started over %d times; systemd failed %d times; systemd's merge left stacked over ours %d times, carrying our metadata bind %d times (each repaired by our next refresh)", retries, sdFail, stacked, covered)
	// Our unmerge removes whichever merge is in place; no per-run work
	// dir of ours may be left (systemd's plain one may be, after one of
	// its failures).
	if res := ours(t, bin, env, "confext", "--root="+r.Host, "unmerge"); res.ExitCode != 0 {
		t.Fatalf("unmerge: %s", res)
	}
	if n := len(MountsAt(etc)); n != 0 {
		t.Fatalf("%d mounts on or below /etc after unmerge\n%s", n, hierDiag(etc, ".systemd-confext"))
	}
	if _, err := os.Lstat(filepath.Join(etc, ".systemd-confext")); err == nil {
		t.Errorf("the bare /etc holds a .systemd-confext after unmerge")
	}
	for _, w := range workDirs(t, r.Host) {
		if w != ".systemd-etc-workdir" {
			t.Errorf("work dir of ours left: %s", w)
		}
	}
}

// topOverlay is the overlay on top of dir (the one no other mount at dir
// sits on), or nil.
func topOverlay(dir string) *MountEntry {
	at := map[int]bool{}
	var ms []MountEntry
	for _, m := range MountsAt(dir) {
		if m.MountPoint == dir {
			ms = append(ms, m)
			at[m.Parent] = true
		}
	}
	for i := range ms {
		if !at[ms[i].ID] && ms[i].FSType == "overlay" {
			return &ms[i]
		}
	}
	return nil
}

// systemdsMerge tells systemd's /etc merge from ours by its work dir:
// systemd 262 always uses the plain name, ours a per-run suffix.
func systemdsMerge(m MountEntry) bool {
	for _, o := range strings.Split(m.SuperOptions, ",") {
		if w, ok := strings.CutPrefix(o, "workdir="); ok {
			return filepath.Base(w) == ".systemd-etc-workdir"
		}
	}
	return false
}

// hierDiag describes what a hierarchy looks like to an inspection, for a
// failure message: the mounts on it, its st_dev and the metadata
// directory's files as read through the top mount.
func hierDiag(dir, dotDir string) string {
	var b strings.Builder
	for _, m := range MountsAt(dir) {
		if m.MountPoint == dir {
			fmt.Fprintf(&b, "mount %d parent %d dev %s %s %s %s\n", m.ID, m.Parent, m.Dev, m.FSType, m.Options, m.SuperOptions)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err == nil {
		fmt.Fprintf(&b, "st_dev %d:%d\n", unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	meta := filepath.Join(dir, dotDir)
	ents, err := os.ReadDir(meta)
	if err != nil {
		fmt.Fprintf(&b, "%s: %v\n", meta, err)
	}
	for _, e := range ents {
		c, err := os.ReadFile(filepath.Join(meta, e.Name()))
		if len(c) > 200 {
			c = c[:200]
		}
		fmt.Fprintf(&b, "%s/%s: %q %v\n", dotDir, e.Name(), c, err)
	}
	return b.String()
}

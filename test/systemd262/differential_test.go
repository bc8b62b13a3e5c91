package systemd262

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// diffCase is one input of the differential tests: an upper-dir layout and
// a mutable mode, always with the standard directory + squashfs + erofs set.
type diffCase struct {
	layout, mode string
	// images is the image set (nil: StandardImages); name labels it.
	images []Image
	name   string
}

// diffCases covers the modes issue 2 names (yes, auto, no) on both Flatcar's
// symlink layout and a separate upper dir, plus the other modes where
// systemd 262 accepts the layout (import and ephemeral-import fail in
// systemd with the symlink layout, see docs/systemd262-facts.md).
var diffCases = []diffCase{
	{layout: LayoutSymlink, mode: "yes"}, {layout: LayoutSymlink, mode: "auto"}, {layout: LayoutSymlink, mode: "no"},
	{layout: LayoutSeparate, mode: "yes"}, {layout: LayoutSeparate, mode: "auto"}, {layout: LayoutSeparate, mode: "no"},
	{layout: LayoutNone, mode: "yes"}, {layout: LayoutNone, mode: "auto"},
	{layout: LayoutSymlink, mode: "ephemeral"},
	{layout: LayoutSeparate, mode: "import"}, {layout: LayoutSeparate, mode: "ephemeral"}, {layout: LayoutSeparate, mode: "ephemeral-import"},
	// Eight images (directories and squashfs) as in the golden N8 capture.
	{layout: LayoutSymlink, mode: "yes", images: MixedImages(8), name: "8img"},
	// Zero images: systemd still merges (meta + upper) in mutable modes, and
	// mounts a read-only meta+/etc overlay in auto mode without a mutable dir.
	{layout: LayoutSymlink, mode: "yes", images: []Image{}, name: "0img"},
	{layout: LayoutNone, mode: "auto", images: []Image{}, name: "0img"},
	// Discovery and validation: .v pick, class suffix, /run shadowing
	// /usr/lib, two images failing validation.
	{layout: LayoutSymlink, mode: "yes", images: DiscoveryImages(), name: "discovery"},
}

// TestDifferential runs, per case, on ONE root (so image identities such as
// file handles and mount ids are the same for both tools):
//
//  1. systemd merges; control: systemd's own refresh skips (proves the
//     harness); (b) our status lists the images and our refresh skips
//     (the overlay's unique mount id is unchanged); (d) our unmerge removes
//     systemd's merge and its work dir.
//  2. we merge; (a) systemd's status lists the images and systemd's refresh
//     (same --mutable) prints the skip message and leaves the overlay;
//     (c) merged tree, metadata files, origin (as JSON) and mount shape
//     equal systemd's from step 1; (d) systemd's unmerge removes our merge
//     and its work dir.
//
// No normalisation of onMountId is needed: both tools run on the same root,
// the images sit on the same mount (the ext4 bound at /mnt/tN of the chroot,
// reached through the same bind from inside and outside the chroot), so
// systemd's and our unique mount ids must be equal. `dev` is compared by
// meaning (it must equal the overlay's st_dev), as each overlay gets a new
// anonymous device.
func TestDifferential(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)
	for _, c := range diffCases {
		name := c.layout + "-" + c.mode
		if c.name != "" {
			name += "-" + c.name
		}
		t.Run(name, func(t *testing.T) {
			f := Fixture{Layout: c.layout, Images: c.images}
			if f.Images == nil {
				f.Images = StandardImages()
			}
			r := newRoot(t, e, f)
			differential(t, e, bin, r, f, c.mode)
		})
	}
}

func differential(t *testing.T, e *Env, bin string, r Root, f Fixture, mode string) {
	names := imageNames(f)
	mutable := "--mutable=" + mode
	sdRoot := "--root=" + r.In
	ourRoot := "--root=" + r.Host

	// --- 1. systemd merges.
	if res := sd(t, e, sdRoot, mutable, "merge"); res.ExitCode != 0 {
		t.Fatalf("systemd merge failed: %s", res)
	}
	sdSnap, err := TakeSnapshot(r.Host)
	if err != nil {
		t.Fatal(err)
	}
	if !sdSnap.DevMatches() {
		t.Fatalf("harness: systemd's own merge has a dev file not matching st_dev: %+v", sdSnap.Meta["dev"])
	}
	id := uniqueID(t, r.Host)
	if res := sd(t, e, sdRoot, mutable, "refresh"); !strings.Contains(res.Output, SkipMessage) || uniqueID(t, r.Host) != id {
		t.Fatalf("harness: systemd's refresh of its own merge did not skip: %s", res)
	}

	// (b) our status recognises systemd's merge.
	res := ours(t, bin, r.OurEnv, "confext", ourRoot, "--json=short", "status")
	if res.ExitCode != 0 {
		t.Errorf("(b) our status after systemd's merge: %s", res)
	} else if st, err := parseStatus(res.Stdout); err != nil {
		t.Errorf("(b) our status --json=short is not systemd's JSON shape: %v\n%s", err, res.Stdout)
	} else if got, ok := merged(st); !ok || !reflect.DeepEqual(got, names) {
		t.Errorf("(b) our status after systemd's merge: /etc listed=%v extensions=%v, want %v", ok, got, names)
	}
	// (b) our refresh skips systemd's unchanged merge.
	res = ours(t, bin, r.OurEnv, "confext", ourRoot, mutable, "refresh")
	if res.ExitCode != 0 {
		t.Errorf("(b) our refresh after systemd's merge: %s", res)
	}
	if now := uniqueID(t, r.Host); now != id {
		t.Errorf("(b) our refresh replaced systemd's unchanged merge (mount id %d -> %d): it should skip", id, now)
		// Restore systemd's merge for the unmerge check below.
		ours(t, bin, r.OurEnv, "confext", ourRoot, "unmerge")
		if res := sd(t, e, sdRoot, mutable, "merge"); res.ExitCode != 0 {
			t.Fatalf("systemd re-merge failed: %s", res)
		}
	}
	// (d) our unmerge removes systemd's merge and its work dir.
	if res := ours(t, bin, r.OurEnv, "confext", ourRoot, "unmerge"); res.ExitCode != 0 {
		t.Errorf("(d) our unmerge of systemd's merge: %s", res)
	}
	requireUnmerged(t, "(d) our unmerge of systemd's merge", r.Host, sdSnap)
	if t.Failed() {
		// Leave a clean hierarchy for step 2 whatever happened.
		sd(t, e, sdRoot, "unmerge")
		UnmountBelow(r.Host + "/etc")
	}

	// --- 2. we merge.
	res = ours(t, bin, r.OurEnv, "confext", ourRoot, mutable, "merge")
	if res.ExitCode != 0 {
		t.Fatalf("our merge failed: %s", res)
	}
	ourSnap, err := TakeSnapshot(r.Host)
	if err != nil {
		t.Fatal(err)
	}
	// (c) same merged state.
	for _, d := range Diff(sdSnap, ourSnap, "systemd", "ours") {
		t.Errorf("(c) %s", d)
	}
	// (a) systemd's status lists our merge.
	res = sd(t, e, sdRoot, "--json=short", "status")
	if st, err := parseStatus(res.Stdout); err != nil {
		t.Errorf("(a) systemd status: %v\n%s", err, res)
	} else if got, ok := merged(st); !ok || !reflect.DeepEqual(got, names) {
		t.Errorf("(a) systemd status after our merge: extensions=%v, want %v (systemd does not see our merge as its own)", got, names)
	}
	// (a) systemd's refresh skips our merge.
	id = uniqueID(t, r.Host)
	res = sd(t, e, sdRoot, mutable, "refresh")
	if !strings.Contains(res.Output, SkipMessage) || res.ExitCode != 0 {
		t.Errorf("(a) systemd refresh after our merge did not skip: %s", res)
		if s, err := TakeSnapshot(r.Host); err == nil {
			t.Errorf("(a) origin systemd computes now: %s", s.OriginJSON())
		}
	}
	if now := uniqueID(t, r.Host); now != id && strings.Contains(res.Output, SkipMessage) {
		t.Errorf("(a) systemd printed the skip message but the overlay changed (mount id %d -> %d)", id, now)
	}
	// (d) systemd's unmerge removes our merge and its work dir.
	if res := sd(t, e, sdRoot, "unmerge"); res.ExitCode != 0 || !strings.Contains(res.Output, "Unmerged") {
		t.Errorf("(d) systemd unmerge of our merge: %s", res)
	}
	requireUnmerged(t, "(d) systemd unmerge of our merge", r.Host, ourSnap)
	UnmountBelow(r.Host + "/etc")
}

// TestSystemdGolden checks the harness against the golden capture
// (/work/shared/docs/systemd-262-golden): systemd's merge of the Flatcar
// layout with --mutable=yes has exactly the metadata files listed there.
func TestSystemdGolden(t *testing.T) {
	e := sdEnv(t)
	f := Fixture{Layout: LayoutSymlink, Images: StandardImages()}
	r := newRoot(t, e, f)
	if res := sd(t, e, "--root="+r.In, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("merge: %s", res)
	}
	defer sd(t, e, "--root="+r.In, "unmerge")
	s, err := TakeSnapshot(r.Host)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for k := range s.Meta {
		files = append(files, k)
	}
	want := map[string]bool{"": true, "confexts": true, "dev": true, "origin": true, "work_dir": true}
	if len(files) != len(want) {
		t.Errorf("metadata files %v, want %v", files, want)
	}
	if got := s.Meta["confexts"].Content; got != "dir1\ner1\nsq1\n" {
		t.Errorf("confexts %q", got)
	}
	if got := s.Meta["work_dir"].Content; got != ".systemd-etc-workdir\n" {
		t.Errorf("work_dir %q", got)
	}
	if got := fmt.Sprint(s.Origin.(map[string]any)["mutable"]); got != "map[mode:yes mutableDirs:map[/etc:/etc]]" {
		t.Errorf("origin mutable %s", got)
	}
	if len(s.Mounts) != 2 || s.Mounts[0].Options != "rw,nosuid,nodev,noexec,noatime" || s.Mounts[1].Options != "ro,nosuid,nodev,noexec,noatime" {
		t.Errorf("mounts: %+v", s.Mounts)
	}
}

// TestRefreshNoticesChange is the negative side of (a)/(b): a refresh must
// not skip when something changed. After systemd's merge an image is added:
// our refresh must replace the merge (new unique mount id) with the new
// image listed, and systemd's refresh must then skip ours; after our merge
// a raw image's mtime changes: systemd's refresh must re-merge, and our
// refresh must then skip systemd's new merge.
func TestRefreshNoticesChange(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)
	f := Fixture{Layout: LayoutSymlink, Images: StandardImages()}
	r := newRoot(t, e, f)
	sdRoot, ourRoot := "--root="+r.In, "--root="+r.Host
	if res := sd(t, e, sdRoot, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("systemd merge: %s", res)
	}
	defer UnmountBelow(r.Host + "/etc")
	f2 := Fixture{Images: []Image{{Name: "added", Kind: KindDir}}}
	if err := f2.Build(r.Host); err != nil {
		t.Fatal(err)
	}
	id := uniqueID(t, r.Host)
	if res := ours(t, bin, r.OurEnv, "confext", ourRoot, "--mutable=yes", "refresh"); res.ExitCode != 0 {
		t.Fatalf("our refresh: %s", res)
	}
	if uniqueID(t, r.Host) == id {
		t.Errorf("our refresh skipped although an image was added")
	}
	s, err := TakeSnapshot(r.Host)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Meta["confexts"].Content; got != "added\ndir1\ner1\nsq1\n" {
		t.Errorf("our merge after refresh lists %q", got)
	}
	if res := sd(t, e, sdRoot, "--mutable=yes", "refresh"); !strings.Contains(res.Output, SkipMessage) {
		t.Errorf("systemd did not skip our refreshed merge: %s", res)
	}

	// A raw image changes (mtime): systemd re-merges, ours then skips.
	raw := r.Host + "/usr/lib/confexts/sq1.raw"
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(raw, later, later); err != nil {
		t.Fatal(err)
	}
	id = uniqueID(t, r.Host)
	if res := sd(t, e, sdRoot, "--mutable=yes", "refresh"); strings.Contains(res.Output, SkipMessage) || uniqueID(t, r.Host) == id {
		t.Fatalf("harness: systemd skipped although sq1.raw changed: %s", res)
	}
	id = uniqueID(t, r.Host)
	if res := ours(t, bin, r.OurEnv, "confext", ourRoot, "--mutable=yes", "refresh"); res.ExitCode != 0 || uniqueID(t, r.Host) != id {
		t.Errorf("our refresh did not skip systemd's fresh merge: %s", res)
	}
	// A changed mode is a change too.
	if res := ours(t, bin, r.OurEnv, "confext", ourRoot, "--mutable=no", "refresh"); res.ExitCode != 0 || uniqueID(t, r.Host) == id {
		t.Errorf("our refresh with another mode skipped: %s", res)
	}
	if res := sd(t, e, sdRoot, "--mutable=no", "refresh"); !strings.Contains(res.Output, SkipMessage) {
		t.Errorf("systemd did not skip our mode-no merge: %s", res)
	}
	if res := sd(t, e, sdRoot, "unmerge"); res.ExitCode != 0 {
		t.Errorf("systemd unmerge: %s", res)
	}
}

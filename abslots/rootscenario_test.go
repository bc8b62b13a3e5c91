package abslots

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
	"golang.org/x/sys/unix"
)

func openRootFS(t *testing.T, dir string) RootFS {
	t.Helper()
	r, err := rootfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return RootFS{r}
}

// TestScenariosRootfs runs the scenarios through the real in-root file
// access (openat2), on tmpfs.
func TestScenariosRootfs(t *testing.T) {
	testutil.RequireRoot(t)
	for _, sc := range scenarios() {
		if len(sc.full) > 0 {
			continue // real ENOSPC: TestOEMPartitionFull
		}
		t.Run(sc.name, func(t *testing.T) {
			dir := testutil.Tmpfs(t)
			writeTree(t, dir, sc.in)
			root := openRootFS(t, dir)
			for i := 0; i < 2; i++ {
				p, log := runFixture(t, root)
				if d := diffTrees(sc.want, snapshot(t, dir)); d != "" {
					t.Fatalf("run %d: state differs:\n%s\nplan:\n%s\nlog:\n%s", i+1, d, p, log)
				}
			}
		})
	}
}

// fullOEMFixture builds scenario 3 with /oem on a 1 MiB loop-mounted ext4
// and a 3 MiB new image on root, so that moving it fails with a real
// ENOSPC. It returns the root and the expected state.
func fullOEMFixture(t *testing.T) (string, tree) {
	t.Helper()
	dir := testutil.Tmpfs(t)
	oem := testutil.LoopFS(t, 1024, "ext4")
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	sc := scenarios()[findScenario(t, "3 OEM partition full")]
	writeTree(t, dir, sc.in)
	// Move the fixture's /oem onto the small filesystem.
	writeTree(t, oem, tree{"oem-release": "ID=test\nNAME=Test\n", "sysext/active-oem-test": "", "sysext/oem-test-" + v1 + ".raw": "v1"})
	os.RemoveAll(filepath.Join(oem, "lost+found"))
	os.RemoveAll(filepath.Join(dir, "oem"))
	os.Mkdir(filepath.Join(dir, "oem"), 0o755)
	if err := unix.Mount(oem, filepath.Join(dir, "oem"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(dir, "oem"), unix.MNT_DETACH) })
	img := filepath.Join(dir, "etc/flatcar/oem-sysext/oem-test-"+v2+".raw")
	if err := os.WriteFile(img, big, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, merge(sc.want, tree{"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": string(big)})
}

// TestOEMPartitionFull: with a real ENOSPC the image stays on root,
// complete, with no partial file on the OEM partition; a rerun keeps that.
func TestOEMPartitionFull(t *testing.T) {
	testutil.RequireRoot(t)
	dir, want := fullOEMFixture(t)
	root := openRootFS(t, dir)
	for i := 1; i <= 2; i++ {
		p, log := runFixture(t, root)
		if d := diffTrees(want, snapshot(t, dir)); d != "" {
			t.Fatalf("run %d: state differs:\n%s\nplan:\n%s\nlog:\n%s", i, d, p, log)
		}
		if i == 1 && !strings.Contains(log, "no space left on device") {
			t.Errorf("no ENOSPC seen:\n%s", log)
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "oem/sysext"))
		for _, e := range ents {
			if e.Name() != "active-oem-test" {
				t.Errorf("left on the OEM partition: %s", e.Name())
			}
		}
	}
}

// TestDifferentialOEMFull compares with Flatcar's script on a real full
// OEM partition (both sides get their own loop filesystem).
func TestDifferentialOEMFull(t *testing.T) {
	testutil.RequireRoot(t)
	referenceScript(t)
	theirs, want := fullOEMFixture(t)
	ours, _ := fullOEMFixture(t)
	env := newBashEnv(t, theirs)
	root := openRootFS(t, ours)
	runBothTwice(t, env, theirs, root, ours)
	if d := diffTrees(want, snapshot(t, ours)); d != "" {
		t.Fatalf("state differs from expectation:\n%s", d)
	}
}

// TestMigrationRunsOnce: after the migrate flag is consumed, a path from the
// list that appears again is left alone.
func TestMigrationRunsOnce(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testutil.Tmpfs(t)
	writeTree(t, dir, scenarios()[findScenario(t, "6 migration")].in)
	root := openRootFS(t, dir)
	runFixture(t, root)
	writeTree(t, dir, tree{"/oem/bin/old-agent": "reinstalled by the user"})
	p, _ := runFixture(t, root)
	if b, err := os.ReadFile(filepath.Join(dir, "oem/bin/old-agent")); err != nil || string(b) != "reinstalled by the user" {
		t.Fatalf("second run touched a migrated path: %q %v\n%s", b, err, p)
	}
	for _, a := range p.Actions {
		if a.Op == OpDelete || a.Op == OpClearFlag {
			t.Errorf("second run planned %s", a.describe())
		}
	}
}

// TestLinksOutsideRoot: links in the root that point (absolute or via "..")
// outside it are resolved inside the root, so nothing outside is read,
// moved or deleted because of them.
func TestLinksOutsideRoot(t *testing.T) {
	testutil.RequireRoot(t)
	outer := testutil.Tmpfs(t)
	dir := filepath.Join(outer, "root")
	outside := filepath.Join(outer, "oem-test-"+v1+".raw")
	os.WriteFile(outside, []byte("outside"), 0o644)
	os.WriteFile(filepath.Join(outer, "list"), []byte("evil\n"), 0o644)
	os.MkdirAll(filepath.Join(outer, "victim"), 0o755)
	os.WriteFile(filepath.Join(outer, "victim/file"), []byte("keep"), 0o644)
	in := merge(merge(osRelV2, oemTest), tree{
		"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": "v2",
		// previous link escaping with ".." and absolutely
		"/etc/extensions/oem-test.raw": "@../../../oem-test-" + v1 + ".raw",
		// an enabled list and a migration list that are links out of the root
		"/etc/flatcar/enabled-sysext.conf": "@../../../list",
		"/oem/sysext/migrate-oem-test":     "",
		"/usr/share/flatcar/oems/test":     "/../victim\n/../../victim/file\n",
	})
	writeTree(t, dir, in)
	root := openRootFS(t, dir)
	p, log := runFixture(t, root)
	if b, err := os.ReadFile(outside); err != nil || string(b) != "outside" {
		t.Fatalf("file outside the root changed: %q %v\n%s\n%s", b, err, p, log)
	}
	if b, err := os.ReadFile(filepath.Join(outer, "victim/file")); err != nil || string(b) != "keep" {
		t.Fatalf("migration deleted outside the root: %v\n%s", err, log)
	}
	for _, c := range p.Choices {
		if c.Kind == "extension" {
			t.Errorf("enabled list outside the root was read: %+v", c)
		}
	}
	if l, _ := os.Readlink(filepath.Join(dir, "etc/extensions/oem-test.raw")); l != "/oem/sysext/oem-test-"+v2+".raw" {
		t.Errorf("link = %q", l)
	}
	for _, a := range p.Actions {
		if a.Op == OpMove {
			t.Errorf("moved a previous image through an escaping link: %s", a.describe())
		}
	}
}

func findScenario(t *testing.T, name string) int {
	for i, sc := range scenarios() {
		if sc.name == name {
			return i
		}
	}
	t.Fatalf("no scenario %q", name)
	return -1
}

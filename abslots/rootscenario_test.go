package abslots

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
	"golang.org/x/sys/unix"
)

// requireRootfsMove gates tests on rootfs having Move and CleanTemps.
func requireRootfsMove(t *testing.T) {
	t.Helper()
	var r any = (*rootfs.Root)(nil)
	_, m := r.(interface{ Move(string, string) error })
	if !m {
		testutil.Gate(t, "rootfs.Root has no Move yet")
	}
}

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
	requireRootfsMove(t)
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

// TestOEMPartitionFull puts /oem on a tiny loop-mounted ext4 so that the
// move fails with a real ENOSPC: the image must stay on root, complete,
// with no partial file on the OEM partition.
func TestOEMPartitionFull(t *testing.T) {
	testutil.RequireRoot(t)
	requireRootfsMove(t)
	dir := testutil.Tmpfs(t)
	oem := testutil.LoopFS(t, 1024, "ext4")
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	sc := scenarios()[2]
	writeTree(t, dir, sc.in)
	// Move the fixture's /oem onto the small filesystem.
	writeTree(t, oem, tree{"oem-release": "ID=test\nNAME=Test\n", "sysext/active-oem-test": "", "sysext/oem-test-" + v1 + ".raw": "v1"})
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
	root := openRootFS(t, dir)
	p, log := runFixture(t, root)
	want := merge(sc.want, tree{"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": string(big)})
	if d := diffTrees(want, snapshot(t, dir)); d != "" {
		t.Fatalf("state differs:\n%s\nplan:\n%s\nlog:\n%s", d, p, log)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "oem/sysext"))
	for _, e := range ents {
		if e.Name() != "active-oem-test" {
			t.Errorf("left on the OEM partition: %s", e.Name())
		}
	}
}

package abslots

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestDedupLeftoverCopy: a copy of the current OEM image left in the
// fallback store (a crash between rename and unlink of a move) is removed,
// but a same-named file of the same size with other bytes is kept: equal
// name and size alone never justify deleting a file.
func TestDedupLeftoverCopy(t *testing.T) {
	img := "/oem/sysext/oem-test-" + v2 + ".raw"
	dup := "/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw"
	link := "/etc/extensions/oem-test.raw"
	base := merge(osRelV2, oemTest)
	for _, tc := range []struct {
		name    string
		dupData string
		want    tree
	}{
		{"identical leftover removed", "v2-image",
			merge(oemTest, tree{img: "v2-image", link: "@" + img})},
		{"same size, other bytes kept", "v2-IMAGE",
			merge(oemTest, tree{img: "v2-image", dup: "v2-IMAGE", link: "@" + img})},
	} {
		in := merge(base, tree{img: "v2-image", dup: tc.dupData})
		check := func(t *testing.T, dir string, root FS) {
			writeTree(t, dir, in)
			for i := 1; i <= 2; i++ {
				p, log := runFixture(t, root)
				if d := diffTrees(tc.want, snapshot(t, dir)); d != "" {
					t.Fatalf("run %d: state differs:\n%s\nplan:\n%s\nlog:\n%s", i, d, p, log)
				}
			}
		}
		t.Run(tc.name+" (host double)", func(t *testing.T) {
			dir := t.TempDir()
			check(t, dir, hostFS{dir: dir})
		})
		t.Run(tc.name+" (rootfs)", func(t *testing.T) {
			testutil.RequireRoot(t)
			dir := testutil.Tmpfs(t)
			check(t, dir, openRootFS(t, dir))
		})
	}
}

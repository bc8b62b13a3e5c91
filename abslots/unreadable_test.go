package abslots

import (
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestUnreadableListsLeaveLinks: an enabled list or oem-release that
// exists but cannot be read (here: a directory, EISDIR) is a problem naming
// the file, and the links stay as they are. Treating it as absent would
// drop the user's opt-outs, or remove every extension link as "no longer
// enabled".
func TestUnreadableListsLeaveLinks(t *testing.T) {
	zfs := "/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw"
	podman := "/etc/flatcar/sysext/flatcar-podman-" + v2 + ".raw"
	oemImg := "/oem/sysext/oem-test-" + v1 + ".raw"
	in := merge(osRelV2, tree{
		"/oem/oem-release/":                      "", // unreadable: a directory
		"/oem/sysext/active-oem-test":            "",
		oemImg:                                   "v1",
		"/etc/extensions/oem-test.raw":           "@" + oemImg,
		"/etc/flatcar/enabled-sysext.conf/":      "", // unreadable: a directory
		"/usr/share/flatcar/enabled-sysext.conf": "zfs\npodman\n",
		zfs:                                      "zfs",
		podman:                                   "podman",
		"/etc/extensions/flatcar-zfs.raw":        "@" + zfs,
	})
	want := tree{"/oem/sysext/active-oem-test": "", oemImg: "v1", "/etc/extensions/oem-test.raw": "@" + oemImg,
		zfs: "zfs", podman: "podman", "/etc/extensions/flatcar-zfs.raw": "@" + zfs}
	check := func(t *testing.T, dir string, root FS) {
		writeTree(t, dir, in)
		p, log := runFixture(t, root)
		if d := diffTrees(want, snapshot(t, dir)); d != "" {
			t.Fatalf("state differs:\n%s\nplan:\n%s\nlog:\n%s", d, p, log)
		}
		probs := strings.Join(p.Problems, "\n")
		for _, f := range []string{"/oem/oem-release: ", "/etc/flatcar/enabled-sysext.conf: "} {
			if !strings.Contains(probs, f) {
				t.Errorf("no problem naming %s in %q", f, p.Problems)
			}
		}
	}
	t.Run("host double", func(t *testing.T) {
		dir := t.TempDir()
		check(t, dir, hostFS{dir: dir})
	})
	t.Run("rootfs", func(t *testing.T) {
		testutil.RequireRoot(t)
		dir := testutil.Tmpfs(t)
		check(t, dir, openRootFS(t, dir))
	})
}

// TestUnreadableDirsLeaveLinks: a store or the link directory that exists
// but cannot be listed (EIO, through the test double) is a problem naming
// it, and the links that depend on it stay: read as empty, the images
// would count as missing and their links be removed.
func TestUnreadableDirsLeaveLinks(t *testing.T) {
	oemImg := "/oem/sysext/oem-test-" + v2 + ".raw"
	zfs := "/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw"
	in := merge(merge(osRelV2, oemTest), tree{
		oemImg:                                   "v2",
		"/etc/extensions/oem-test.raw":           "@" + oemImg,
		"/usr/share/flatcar/enabled-sysext.conf": "zfs\n",
		zfs:                                      "zfs",
		"/etc/extensions/flatcar-zfs.raw":        "@" + zfs,
		"/etc/extensions/flatcar-podman.raw":     "@/dev/null",
	})
	want := merge(oemTest, tree{oemImg: "v2", "/etc/extensions/oem-test.raw": "@" + oemImg,
		zfs: "zfs", "/etc/extensions/flatcar-zfs.raw": "@" + zfs, "/etc/extensions/flatcar-podman.raw": "@/dev/null"})
	for _, dir := range []string{"/oem/sysext", "/etc/flatcar/sysext", "/etc/extensions"} {
		t.Run(dir, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, in)
			p, log := runFixture(t, hostFS{dir: root, eio: map[string]bool{dir: true}})
			if d := diffTrees(want, snapshot(t, root)); d != "" {
				t.Fatalf("state differs:\n%s\nplan:\n%s\nlog:\n%s", d, p, log)
			}
			if !strings.Contains(strings.Join(p.Problems, "\n"), dir+": ") {
				t.Errorf("no problem naming %s in %q", dir, p.Problems)
			}
			for _, a := range p.Actions {
				if a.Op == OpUnlink || (a.Op == OpSymlink && strings.Contains(a.Path, "podman")) {
					t.Errorf("planned %s", a.describe())
				}
			}
		})
	}
}

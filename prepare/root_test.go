package prepare

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// mountEtcOverlay merges root/etc the way the confext mutable mode does
// with Flatcar's link: the vendor defaults as the lower layer and /etc
// itself as the upper dir.
func mountEtcOverlay(t *testing.T, root string) {
	t.Helper()
	work := filepath.Join(root, ".etc-work")
	os.MkdirAll(work, 0o700)
	opts := "lowerdir=" + filepath.Join(root, "usr/share/flatcar/etc") + ",upperdir=" + filepath.Join(root, "etc") + ",workdir=" + work + ",index=off,metacopy=off"
	if err := unix.Mount("overlay", filepath.Join(root, "etc"), "overlay", 0, opts); err != nil {
		t.Fatalf("mount /etc overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(root, "etc"), unix.MNT_DETACH) })
}

// underneath returns a path showing root's own file system without its
// submounts (a non-recursive bind), so the real /etc under a merge can be
// inspected.
func underneath(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount(root, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func etcMountID(t *testing.T, root string) uint64 {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, _, err := mount.StatxMountID(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestRealOverlayRerun: with /etc merged over the defaults, the user
// deletes a default (whiteout), recreates a directory (opaque), adds a
// file, sets ACLs and xattrs through the overlay. A run while /etc is
// merged must work on the real /etc underneath, leave /etc merged (same
// mount), never remove anything through the overlay (no new whiteout),
// and reach exactly the state that a run on the unmerged tree reaches.
func TestRealOverlayRerun(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setfacl")
	sc := dedupScenario()
	// The whiteout list names a default the user deleted.
	sc.usr[0].data = "/etc/listed\n"
	sc.usr = append(sc.usr, ent{path: "share/flatcar/etc/listed", kind: 'f', data: "l"},
		ent{path: "share/flatcar/etc/deleted", kind: 'f', data: "d"},
		ent{path: "share/flatcar/etc/recreated", kind: 'd'},
		ent{path: "share/flatcar/etc/recreated/a", kind: 'f', data: "a"},
		ent{path: "share/flatcar/etc/recreated/b", kind: 'f', data: "b"})
	merged, plain := setupRoot(t, sc), setupRoot(t, sc)
	// The same user actions: through the overlay on one, as the upper-dir
	// result on the other.
	mountEtcOverlay(t, merged)
	me := filepath.Join(merged, "etc")
	must(t, os.Remove(filepath.Join(me, "listed")))
	must(t, os.Remove(filepath.Join(me, "deleted")))
	must(t, os.RemoveAll(filepath.Join(me, "recreated")))
	must(t, os.Mkdir(filepath.Join(me, "recreated"), 0o755))
	must(t, os.WriteFile(filepath.Join(me, "recreated/a"), []byte("a"), 0o644))
	must(t, os.WriteFile(filepath.Join(me, "via-overlay"), []byte("new"), 0o644))
	if err := unix.Setxattr(filepath.Join(me, "same"), "user.note", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	setfacl(t, filepath.Join(me, "content"), "-m", "u:1000:r--")
	// A label is an xattr a reader sees like any other: a copy that
	// differs from its default only by it stays. Set one where the file
	// system takes it (without an LSM, tmpfs keeps security.* xattrs).
	selinux := unix.Setxattr(filepath.Join(me, "suid"), "security.selinux", []byte("system_u:object_r:etc_t:s0"), 0) == nil

	id := etcMountID(t, merged)
	below := underneath(t, merged)
	// Reproduce the resulting upper dir on the plain tree.
	copyTree(t, filepath.Join(below, "etc"), filepath.Join(plain, "etc"))
	if d := diffSnap(snapshot(t, below, "/usr", "/.etc-work"), snapshot(t, plain, "/usr")); d != "" {
		t.Fatalf("the two trees differ before the run:\n%s", d)
	}
	wo := snapshot(t, filepath.Join(below, "etc"))
	if !strings.Contains(wo["/deleted"], "rdev=0:0") || !strings.Contains(wo["/recreated"], "trusted.overlay.opaque=79") {
		t.Fatalf("the overlay did not leave a whiteout and an opaque dir: %q %q", wo["/deleted"], wo["/recreated"])
	}

	for i := 1; i <= 2; i++ {
		res, log := runOurs(t, merged, diffConfig(), false)
		if !res.BelowMerge {
			t.Fatalf("run %d: /etc merge not noticed\n%s", i, log)
		}
		runOurs(t, plain, diffConfig(), false)
		if got := etcMountID(t, merged); got != id {
			t.Fatalf("run %d: /etc mount changed (%d -> %d)", i, id, got)
		}
		got := snapshot(t, below, "/usr", "/.etc-work")
		if d := diffSnap(snapshot(t, plain, "/usr"), got); d != "" {
			t.Fatalf("run %d: merged run (got) differs from unmerged run (want):\n%s\n%s", i, d, log)
		}
		for p, d := range got {
			if strings.Contains(d, "rdev=0:0") && p != "/etc/deleted" && p != "/etc/whiteout" {
				t.Errorf("run %d: whiteout %s: something was removed through the overlay", i, p)
			}
		}
		if i == 1 {
			for _, p := range []string{"/etc/link", "/etc/dir", "/etc/listed"} {
				if _, ok := got[p]; ok {
					t.Errorf("%s not removed", p)
				}
			}
			// /etc/same got a user xattr through the overlay: a reader
			// would lose it, so it stays.
			for _, p := range []string{"/etc/same", "/etc/deleted", "/etc/recreated/a", "/etc/via-overlay", "/etc/content", "/etc/opaque/a"} {
				if _, ok := got[p]; !ok {
					t.Errorf("%s removed", p)
				}
			}
			if _, ok := got["/etc/suid"]; !ok && selinux {
				t.Errorf("/etc/suid differs from its default by its SELinux label and was removed")
			}
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// copyTree replaces dst by a copy of src with cp -a (xattrs, ACLs, device
// nodes, hard links).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	must(t, os.RemoveAll(dst))
	runCmd(t, "cp", "-a", src, dst)
}

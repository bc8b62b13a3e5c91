package units

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

// initrdTree is what `make install-initrd` must produce for PREFIX=/usr:
// files with their modes, symlinks with their targets. docs/initrd.md shows
// the same list.
var initrdTree = map[string]string{
	"usr/bin/ext-setup-root":                                                "file 0755",
	"usr/lib/systemd/system/ext-setup-root-pre.service":                     "file 0644",
	"usr/lib/systemd/system/ext-setup-root-post.service":                    "file 0644",
	"etc/systemd/system/initrd.target.requires/ext-setup-root-pre.service":  "-> /usr/lib/systemd/system/ext-setup-root-pre.service",
	"etc/systemd/system/initrd.target.requires/ext-setup-root-post.service": "-> /usr/lib/systemd/system/ext-setup-root-post.service",
	"etc/systemd/system/systemd-confext-sysroot.service":                    "-> /dev/null",
	"etc/systemd/system/systemd-sysext-sysroot.service":                     "-> /dev/null",
}

// listTree maps every non-directory under dir to "file MODE" or "-> TARGET".
func listTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			got[rel] = "-> " + target
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		got[rel] = fmt.Sprintf("file %04o", fi.Mode().Perm())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func diffTrees(t *testing.T, got, want map[string]string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: %q, want %q", k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s (%s)", k, got[k])
		}
	}
}

// TestMakeInstallInitrd checks the tree `make install-initrd` writes, and
// that its links and masks are exactly what the dracut module's
// `systemctl --root add-requires` and `systemctl --root mask` write.
func TestMakeInstallInitrd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dest := makeTarget(t, "install-initrd")
	diffTrees(t, listTree(t, dest), initrdTree)
	for _, u := range []string{"ext-setup-root-pre.service", "ext-setup-root-post.service"} {
		b, _ := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system", u))
		s, _ := os.ReadFile(filepath.Join("initrd", u))
		if string(b) != string(s) {
			t.Errorf("%s differs from initrd/%s with PREFIX=/usr", u, u)
		}
	}

	// The dracut module's commands on a tree with only the units.
	testutil.RequireTool(t, "systemctl")
	ref := t.TempDir()
	ud := filepath.Join(ref, "usr/lib/systemd/system")
	os.MkdirAll(ud, 0o755)
	os.WriteFile(filepath.Join(ud, "initrd.target"), []byte("[Unit]\nDescription=stand-in\n"), 0o644)
	for _, u := range []string{"ext-setup-root-pre.service", "ext-setup-root-post.service"} {
		b, _ := os.ReadFile(filepath.Join("initrd", u))
		os.WriteFile(filepath.Join(ud, u), b, 0o644)
		systemctl(t, ref, "add-requires", "initrd.target", u)
	}
	systemctl(t, ref, "mask", "systemd-confext-sysroot.service", "systemd-sysext-sysroot.service")
	links := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if strings.HasPrefix(v, "-> ") {
				out[k] = v
			}
		}
		return out
	}
	diffTrees(t, links(initrdTree), links(listTree(t, ref)))
}

func systemctl(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := exec.Command("systemctl", append([]string{"-q", "--root=" + root}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemctl %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestInstallInitrdVerify lays the `make install-initrd` tree over a
// throw-away overlay of the systemd 262 chroot (a systemd-only initrd's
// unit set: initrd.target, systemd's own sysroot units) and checks with
// `systemd-analyze verify` that the initrd transaction is clean, that the
// requires links pull both stages into it, and that the masks keep
// systemd's sysroot units out of it. Each claim has a control that makes
// verify speak, or the silence would prove nothing.
func TestInstallInitrdVerify(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mount", "chroot", "cp", "make", "go")
	chroot := systemd262.ChrootDir()
	if chroot == "" {
		testutil.Gate(t, "systemd 262 chroot missing (make systemd262-root, or set %s)", systemd262.RootEnv)
	}
	dest := makeTarget(t, "install-initrd")
	m := overlayChroot(t, chroot)
	if out, err := exec.Command("cp", "-a", dest+"/.", m+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(m, "etc/initrd-release"), nil, 0o644)
	const ud = "usr/lib/systemd/system/"
	// systemd's presets enable both sysroot units in an initrd
	// (WantedBy=initrd.target); the chroot is a host system, so do it here.
	for _, u := range []string{"systemd-confext-sysroot.service", "systemd-sysext-sysroot.service"} {
		os.MkdirAll(filepath.Join(m, ud, "initrd.target.wants"), 0o755)
		os.Symlink("../"+u, filepath.Join(m, ud, "initrd.target.wants", u))
	}
	verify := func() string {
		out, _ := exec.Command("chroot", m, "systemd-analyze", "verify", "--man=no",
			"initrd.target", "initrd-switch-root.target").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	if out := verify(); out != "" {
		t.Fatalf("initrd transaction: %s", out)
	}
	for _, u := range []string{"systemd-confext-sysroot.service", "systemd-sysext-sysroot.service"} {
		// stdout only: without /proc the chroot's systemctl warns on stderr.
		out, _ := exec.Command("chroot", m, "systemctl", "is-enabled", u).Output()
		if got := strings.TrimSpace(string(out)); got != "masked" {
			t.Errorf("%s: is-enabled %q, want masked", u, got)
		}
	}

	// Requires links: a cycle injected into each stage is reported, so the
	// stage is part of initrd.target's transaction; without the link it is
	// not (control).
	for _, u := range []string{"ext-setup-root-pre.service", "ext-setup-root-post.service"} {
		dropin := filepath.Join(m, "etc/systemd/system", u+".d")
		os.MkdirAll(dropin, 0o755)
		os.WriteFile(filepath.Join(dropin, "cycle.conf"), []byte("[Unit]\nBefore=initrd-root-fs.target\n"), 0o644)
		if out := verify(); !strings.Contains(out, "ordering cycle") {
			t.Errorf("%s: not in the initrd transaction (no cycle reported): %q", u, out)
		}
		link := filepath.Join(m, "etc/systemd/system/initrd.target.requires", u)
		target, _ := os.Readlink(link)
		os.Remove(link)
		if out := verify(); strings.Contains(out, "ordering cycle") {
			t.Errorf("control: %s without its link still in the transaction: %q", u, out)
		}
		os.Symlink(target, link)
		os.RemoveAll(dropin)
	}

	// Masks: the same cycle in a sysroot unit (a drop-in ordering it after
	// initrd.target) is not reported while masked, and is once unmasked.
	for _, u := range []string{"systemd-confext-sysroot.service", "systemd-sysext-sysroot.service"} {
		dropin := filepath.Join(m, ud, u+".d")
		os.MkdirAll(dropin, 0o755)
		os.WriteFile(filepath.Join(dropin, "cycle.conf"), []byte("[Unit]\nAfter=initrd.target\n"), 0o644)
		if out := verify(); out != "" {
			t.Errorf("masked %s still in the transaction: %q", u, out)
		}
		mask := filepath.Join(m, "etc/systemd/system", u)
		os.Remove(mask)
		if out := verify(); !strings.Contains(out, "ordering cycle") {
			t.Errorf("control: unmasked %s with a cycle not reported: %q", u, out)
		}
		os.Symlink("/dev/null", mask)
		os.RemoveAll(dropin)
	}
}

// overlayChroot mounts a writable overlay of chroot on a tmpfs, so the
// cached chroot itself is never written, and returns its mount point.
func overlayChroot(t *testing.T, chroot string) string {
	t.Helper()
	w := testutil.Tmpfs(t)
	for _, d := range []string{"u", "w", "m"} {
		os.Mkdir(filepath.Join(w, d), 0o755)
	}
	m := filepath.Join(w, "m")
	opts := "lowerdir=" + chroot + ",upperdir=" + w + "/u,workdir=" + w + "/w"
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, m).CombinedOutput(); err != nil {
		t.Fatalf("mount overlay: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", m).Run() })
	return m
}

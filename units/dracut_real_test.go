package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// qemuRootfs is the Debian forky root that `make qemu-prepare` caches for
// the QEMU tests; it carries the real dracut.
func qemuRootfs(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("EXT_SETUP_ROOT_CACHE")
	if cache == "" {
		cache = "/var/cache/ext-setup-root"
	}
	root := filepath.Join(cache, "qemu", "rootfs")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/dracut")); err != nil {
		testutil.Gate(t, "dracut in the QEMU test root %s (make qemu-prepare): %v", root, err)
	}
	return root
}

// dracutRun builds an initramfs with the real dracut in a throw-away
// overlay of the QEMU test root, with our module, a stand-in binary and
// the given initrd units installed, and returns dracut's output, its
// error and whether an image was written, plus the image's file list.
func dracutRun(t *testing.T, rootfs string, units []string) (out string, err error, files string) {
	t.Helper()
	base := t.TempDir()
	upper, work, merged := filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	for _, d := range []string{upper, work, merged} {
		os.Mkdir(d, 0o755)
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+rootfs+",upperdir="+upper+",workdir="+work); err != nil {
		t.Fatalf("overlay on %s: %v", merged, err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	for _, d := range []string{"proc", "sys", "dev"} {
		if err := unix.Mount("/"+d, filepath.Join(merged, d), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			t.Fatal(err)
		}
	}
	module, err := os.ReadFile(moduleSetup)
	if err != nil {
		t.Fatal(err)
	}
	tree := map[string]string{
		"usr/lib/dracut/modules.d/99ext-setup-root/module-setup.sh": string(module),
		"usr/bin/ext-setup-root":                                    "#!/bin/sh\n",
		// The module installs the OS's CA bundle; the test root has none.
		"etc/ssl/certs/ca-certificates.crt": "test bundle\n",
	}
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join("initrd", u))
		if err != nil {
			t.Fatal(err)
		}
		tree["usr/lib/systemd/system/"+u] = string(b)
	}
	testutil.WriteTree(t, merged, tree)
	os.Chmod(filepath.Join(merged, "usr/bin/ext-setup-root"), 0o755)
	// --no-kernel: no kernel modules needed (installkernel is not run);
	// --compress cat: lsinitrd reads it without a decompressor.
	cmd := exec.Command("chroot", merged, "dracut", "--force", "--no-hostonly", "--no-kernel", "--kver", "0.0.0-test",
		"-m", "systemd systemd-initrd ext-setup-root", "--compress", "cat", "/tmp/test.img")
	b, err := cmd.CombinedOutput()
	if _, serr := os.Stat(filepath.Join(merged, "tmp/test.img")); serr == nil {
		l, lerr := exec.Command("chroot", merged, "lsinitrd", "/tmp/test.img").CombinedOutput()
		if lerr != nil {
			t.Fatalf("lsinitrd: %v\n%s", lerr, l)
		}
		files = string(l)
	}
	return string(b), err, files
}

// TestDracutRealMissingUnitFails (issue 18 item 7) runs the real dracut of
// the QEMU test root: with ext-setup-root-pre.service missing, dracut
// must fail naming it and write no image (before, it succeeded and the
// image lacked our units and the masks); with both units it succeeds and
// the image holds them, their initrd.target links and both masks.
func TestDracutRealMissingUnitFails(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "chroot")
	rootfs := qemuRootfs(t)
	out, err, files := dracutRun(t, rootfs, []string{"ext-setup-root-post.service"})
	if err == nil || files != "" {
		t.Errorf("dracut with a missing unit: err %v, image written %v\n%s", err, files != "", out)
	}
	if !strings.Contains(out, "ext-setup-root: cannot install /usr/lib/systemd/system/ext-setup-root-pre.service") {
		t.Errorf("dracut's output does not name the missing unit:\n%s", out)
	}
	out, err, files = dracutRun(t, rootfs, []string{"ext-setup-root-pre.service", "ext-setup-root-post.service"})
	if err != nil || files == "" {
		t.Fatalf("control run with both units: %v\n%s", err, out)
	}
	for _, want := range []string{
		"usr/bin/ext-setup-root",
		"usr/lib/systemd/system/ext-setup-root-pre.service",
		"usr/lib/systemd/system/ext-setup-root-post.service",
		"etc/systemd/system/initrd.target.requires/ext-setup-root-pre.service",
		"etc/systemd/system/systemd-confext-sysroot.service -> /dev/null",
		"etc/systemd/system/systemd-sysext-sysroot.service -> /dev/null",
		// Issue 15 item 4: what the fetcher starts on demand.
		"usr/lib/systemd/systemd-networkd",
		"usr/lib/systemd/system/systemd-networkd.service",
		"usr/lib/systemd/system/systemd-networkd.socket",
		"usr/lib/systemd/network/zz-ext-setup-root-default.network",
		"etc/ssl/certs/ca-certificates.crt",
	} {
		if !strings.Contains(files, want) {
			t.Errorf("image lacks %s:\n%s", want, files)
		}
	}
	// ...and none of it enabled: a boot with nothing missing starts no
	// network unit.
	for _, l := range strings.Split(files, "\n") {
		if strings.Contains(l, ".wants/systemd-networkd") || strings.Contains(l, ".wants/systemd-resolved") {
			t.Errorf("a network unit is enabled in the image: %s", l)
		}
	}
}

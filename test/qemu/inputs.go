// Package qemu holds the QEMU boot tests: it builds a Flatcar-like GPT disk
// from the Debian forky tree prepared by scripts/prepare-qemu.sh, a dracut
// initramfs with the ext-setup-root module, boots them under QEMU (TCG) and
// checks what a reporter service in the guest prints on the serial console.
//
// The tests run as root on the host and use no network, except
// TestQEMUFetch: its guest has a restricted QEMU user network whose only
// way out is a guestfwd rule to the test's own server on the loopback.
package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// Inputs are the cached, prepared artefacts a boot test needs.
type Inputs struct {
	Cache   string // $EXT_SETUP_ROOT_CACHE/qemu
	Vmlinux string // uncompressed kernel, booted through its PVH entry
	KVer    string // kernel release
	Modules string // directory holding KVer/
	Rootfs  string // minimal forky root (systemd, udev, dracut)
	QEMU    string // qemu-system-x86_64
}

// cacheDir returns the QEMU input cache, following the same override as
// scripts/prepare-qemu.sh so both agree without configuration.
func cacheDir() string {
	base := os.Getenv("EXT_SETUP_ROOT_CACHE")
	if base == "" {
		base = "/var/cache/ext-setup-root"
	}
	return filepath.Join(base, "qemu")
}

// RequireInputs gates t on root, the host tools the image builder uses, the
// QEMU binary and the prepared forky inputs; it skips (or fails under
// EXT_SETUP_ROOT_REQUIRE_ALL=1) naming what is missing.
func RequireInputs(t testing.TB) *Inputs {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU boot tests are not short")
	}
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "qemu-system-x86_64", "sgdisk", "mkfs.ext4", "mkfs.erofs", "mksquashfs", "depmod", "chroot", "make")
	in := &Inputs{Cache: cacheDir()}
	in.Vmlinux = filepath.Join(in.Cache, "kernel", "vmlinux")
	in.Modules = filepath.Join(in.Cache, "kernel", "modules")
	in.Rootfs = filepath.Join(in.Cache, "rootfs")
	kv, err := os.ReadFile(filepath.Join(in.Cache, "kernel", "version"))
	if err != nil {
		testutil.Gate(t, "QEMU inputs in %s (run make qemu-prepare): %v", in.Cache, err)
		return nil
	}
	in.KVer = strings.TrimSpace(string(kv))
	for _, p := range []string{in.Vmlinux, filepath.Join(in.Modules, in.KVer, "modules.dep"), filepath.Join(in.Rootfs, "usr/bin/dracut")} {
		if _, err := os.Stat(p); err != nil {
			testutil.Gate(t, "QEMU input %s (run make qemu-prepare): %v", p, err)
			return nil
		}
	}
	in.QEMU, _ = exec.LookPath("qemu-system-x86_64")
	return in
}

// Kernel is one row of the QEMU kernel matrix: a Debian suite whose kernel
// scripts/prepare-qemu.sh fetched into $cache/qemu/kernel-SUITE ("" is the
// default forky kernel in kernel/).
type Kernel struct {
	Suite string
	Name  string // for test names and logs, e.g. "6.1-bookworm"
}

// MatrixKernels are the kernels of the matrix besides forky's: Debian 12's
// 6.1 LTS (no MOVE_MOUNT_BENEATH, no lowerdir+, no fd layers) and Debian
// 13's 6.12 LTS (no fd layers, no detached layers).
var MatrixKernels = []Kernel{{Suite: "bookworm", Name: "6.1-bookworm"}, {Suite: "trixie", Name: "6.12-trixie"}}

// WithKernel returns a copy of in that boots the kernel of k (its vmlinux,
// release and modules, for the initramfs and the /usr image alike). It
// gates t on the prepared kernel.
func WithKernel(t testing.TB, in *Inputs, k Kernel) *Inputs {
	t.Helper()
	if k.Suite == "" {
		return in
	}
	dir := filepath.Join(in.Cache, "kernel-"+k.Suite)
	kv, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		testutil.Gate(t, "QEMU kernel %s in %s (run make qemu-prepare): %v", k.Name, dir, err)
		return nil
	}
	out := *in
	out.KVer = strings.TrimSpace(string(kv))
	out.Vmlinux = filepath.Join(dir, "vmlinux")
	out.Modules = filepath.Join(dir, "modules")
	for _, p := range []string{out.Vmlinux, filepath.Join(out.Modules, out.KVer, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			testutil.Gate(t, "QEMU kernel input %s (run make qemu-prepare): %v", p, err)
			return nil
		}
	}
	return &out
}

// WithRootfs returns a copy of in whose OS image (/usr, the root file
// system) and initramfs (its dracut and systemd) come from the minimal
// root of suite that scripts/prepare-qemu.sh fetched into
// $cache/qemu/rootfs-SUITE, e.g. trixie's systemd 257.
func WithRootfs(t testing.TB, in *Inputs, suite string) *Inputs {
	t.Helper()
	dir := filepath.Join(in.Cache, "rootfs-"+suite)
	for _, p := range []string{filepath.Join(dir, "usr/bin/dracut"), dir + ".manifest"} {
		if _, err := os.Stat(p); err != nil {
			testutil.Gate(t, "QEMU root of %s %s (run make qemu-prepare): %v", suite, p, err)
			return nil
		}
	}
	out := *in
	out.Rootfs = dir
	return &out
}

// manifest returns the package list of in's root (hashed into the cache
// keys of the images built from it).
func (in *Inputs) manifest() []byte {
	m, _ := os.ReadFile(in.Rootfs + ".manifest")
	return m
}

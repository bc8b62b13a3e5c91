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
	Arch    string // Go/Debian architecture of the guest: amd64 or arm64
	Cache   string // $EXT_SETUP_ROOT_CACHE/qemu (amd64) or qemu-arm64
	Vmlinux string // the kernel QEMU boots: the uncompressed vmlinux (amd64, PVH entry) or the arm64 Image
	KVer    string // kernel release
	Modules string // directory holding KVer/
	Rootfs  string // minimal forky root (systemd, udev, dracut)
	QEMU    string // qemu-system-x86_64 or qemu-system-aarch64
}

// guestArch is what differs between the guest architectures: where
// scripts/prepare-qemu.sh puts the inputs (EXT_SETUP_ROOT_QEMU_ARCH), the
// kernel file, the QEMU binary and machine, and the serial console.
type guestArch struct {
	cacheSub string   // under $EXT_SETUP_ROOT_CACHE
	kernel   string   // under cacheSub/kernel
	qemu     string   // QEMU system emulator
	machine  []string // QEMU arguments that choose the machine and CPU
	console  string   // the serial console's device name in the guest
	board    string   // FLATCAR_BOARD in the test os-release
	prepare  string   // the make target that prepares the inputs
}

// guestArches holds the two architectures Flatcar ships.
var guestArches = map[string]guestArch{
	"amd64": {
		cacheSub: "qemu", kernel: "vmlinux", qemu: "qemu-system-x86_64",
		// +rdrand: the guest's CRNG is ready at time 0, as on any real
		// x86 machine since 2012. Without it the kernel reached "crng init
		// done" mid-boot, and its live code patching at that moment
		// crashed the guest under multi-threaded TCG (an int3 oops in
		// get_random_u32 on the other vCPU, seen in this suite).
		machine: []string{"-cpu", "qemu64,+rdrand"},
		console: "ttyS0", board: "amd64-usr", prepare: "make qemu-prepare",
	},
	"arm64": {
		cacheSub: "qemu-arm64", kernel: "Image", qemu: "qemu-system-aarch64",
		// virt: the generic board (PCI virtio, PL011 serial, no firmware
		// needed for -kernel). -cpu max has FEAT_RNG, so the CRNG is
		// seeded at once as with +rdrand on x86; pauth-impdef swaps the
		// architected pointer-authentication hash, whose emulation is the
		// slowest part of -cpu max under TCG, for QEMU's cheap one.
		machine: []string{"-M", "virt", "-cpu", "max,pauth-impdef=on"},
		console: "ttyAMA0", board: "arm64-usr", prepare: "make qemu-prepare-arm64",
	},
}

// arch returns the guest architecture of in (amd64 when unset).
func (in *Inputs) arch() guestArch {
	if a, ok := guestArches[in.Arch]; ok {
		return a
	}
	return guestArches["amd64"]
}

// cacheBase returns $EXT_SETUP_ROOT_CACHE, following the same override as
// scripts/prepare-qemu.sh so both agree without configuration.
func cacheBase() string {
	base := os.Getenv("EXT_SETUP_ROOT_CACHE")
	if base == "" {
		base = "/var/cache/ext-setup-root"
	}
	return base
}

// cacheDir returns the amd64 QEMU input cache.
func cacheDir() string {
	return filepath.Join(cacheBase(), guestArches["amd64"].cacheSub)
}

// RequireInputs gates t on root, the host tools the image builder uses, the
// QEMU binary and the prepared forky inputs; it skips (or fails under
// EXT_SETUP_ROOT_REQUIRE_ALL=1) naming what is missing.
func RequireInputs(t testing.TB) *Inputs {
	t.Helper()
	return requireInputs(t, "amd64")
}

// Arm64Env opts in to the arm64 boot in make test (make test-long always
// sets it): it takes tens of minutes under TCG on two shared cores.
const Arm64Env = "EXT_SETUP_ROOT_QEMU_ARM64"

// RequireInputsArm64 is RequireInputs for the arm64 guest. The arm64 boot
// is opt-in: without EXT_SETUP_ROOT_QEMU_ARM64=1 the test skips (also
// under EXT_SETUP_ROOT_REQUIRE_ALL=1, since nobody asked for it); with it,
// missing inputs skip or, under EXT_SETUP_ROOT_REQUIRE_ALL=1, fail. Besides
// the inputs it needs a binfmt_misc handler for arm64 executables (dracut
// runs in the arm64 root with chroot), which make qemu-prepare-arm64
// registers.
func RequireInputsArm64(t testing.TB) *Inputs {
	t.Helper()
	if os.Getenv(Arm64Env) != "1" {
		t.Skipf("the arm64 boot is opt-in: set %s=1 (make test-long sets it)", Arm64Env)
	}
	in := requireInputs(t, "arm64")
	if in == nil {
		return nil
	}
	if err := binfmtArm64(); err != nil {
		testutil.Gate(t, "arm64 executables in a chroot (run make qemu-prepare-arm64): %v", err)
		return nil
	}
	return in
}

// requireInputs gates t on the inputs of the guest architecture arch.
func requireInputs(t testing.TB, arch string) *Inputs {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU boot tests are not short")
	}
	ga := guestArches[arch]
	testutil.RequireRoot(t)
	testutil.RequireTool(t, ga.qemu, "sgdisk", "mkfs.ext4", "mkfs.erofs", "mksquashfs", "depmod", "chroot", "make")
	in := &Inputs{Arch: arch, Cache: filepath.Join(cacheBase(), ga.cacheSub)}
	in.Vmlinux = filepath.Join(in.Cache, "kernel", ga.kernel)
	in.Modules = filepath.Join(in.Cache, "kernel", "modules")
	in.Rootfs = filepath.Join(in.Cache, "rootfs")
	kv, err := os.ReadFile(filepath.Join(in.Cache, "kernel", "version"))
	if err != nil {
		testutil.Gate(t, "QEMU inputs in %s (run %s): %v", in.Cache, ga.prepare, err)
		return nil
	}
	in.KVer = strings.TrimSpace(string(kv))
	for _, p := range []string{in.Vmlinux, filepath.Join(in.Modules, in.KVer, "modules.dep"), filepath.Join(in.Rootfs, "usr/bin/dracut")} {
		if _, err := os.Stat(p); err != nil {
			testutil.Gate(t, "QEMU input %s (run %s): %v", p, ga.prepare, err)
			return nil
		}
	}
	in.QEMU, _ = exec.LookPath(ga.qemu)
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

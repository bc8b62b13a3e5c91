package qemu

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dracutModules is the small module set of the test initramfs (12-13 MB
// instead of Debian's default 40 MB, which boots 15 s slower under TCG).
const dracutModules = "systemd systemd-initrd systemd-udevd systemd-journald systemd-modules-load systemd-sysctl systemd-tmpfiles kernel-modules rootfs-block udev-rules dracut-systemd base fs-lib shutdown"

// dracutDrivers are the drivers the test disk needs to be found and mounted.
const dracutDrivers = "virtio_blk virtio_pci ext4 erofs"

// ourModule is the dracut module E2 ships (dracut/99ext-setup-root).
const ourModule = "ext-setup-root"

// oemMountUnit is the test OS image's own initrd mount of the OEM partition
// (Flatcar's bootengine ships one too): ext-setup-root-post.service wants
// and orders after sysroot-oem.mount. It is added with dracut --include.
const oemMountUnit = `[Unit]
Description=OEM partition (ext-setup-root QEMU test image)
DefaultDependencies=no
Before=initrd-fs.target
Conflicts=shutdown.target
Before=shutdown.target

[Mount]
What=/dev/disk/by-partlabel/OEM
Where=/sysroot/oem
Type=ext4
`

var (
	initrdMu    sync.Mutex
	initrdCache = map[string]string{}
)

// InitrdSpec selects what the test initramfs carries beyond the base
// module set.
type InitrdSpec struct {
	Ours bool // our dracut module (--add ext-setup-root)
	// Certs go to the initrd's /etc/verity.d, where the root hash
	// signature of a verity image is verified in userspace.
	Certs []SigningKey
	// SysextSysroot adds dracut's systemd-sysext module (systemd 262's
	// systemd-confext-sysroot.service, the peer we compare against) and
	// the dm-verity modules it needs.
	SysextSysroot bool
	// LogWrites records the writes to the OEM and ROOT partitions with
	// dm-log-writes on a second disk (power cuts, disk model (b),
	// powercut_dmlog.go): dracut's dm module, the target's module, the
	// set-up unit and the marks; the OEM partition is mounted from the
	// mapped device (boot with LogWritesCmdline).
	LogWrites bool
}

// repoRoot finds the module root (go.mod) above the test's directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = up
	}
}

// Initrd returns a dracut initramfs built inside the cached forky root, as a
// distribution would: `make install DESTDIR=<copy of the root>` puts our
// binary, units and dracut module in place, then `dracut --no-hostonly` runs
// in a chroot with the small module set plus `--add ext-setup-root` (when
// withOurs). The image is cached under $cache/initrd by a hash of what was
// installed, the module set and the inputs, so repeated runs reuse it.
func Initrd(t testing.TB, in *Inputs, withOurs bool) string {
	t.Helper()
	return InitrdFor(t, in, InitrdSpec{Ours: withOurs})
}

// InitrdFor is Initrd with certificates and the systemd-sysext module.
func InitrdFor(t testing.TB, in *Inputs, spec InitrdSpec) string {
	t.Helper()
	withOurs := spec.Ours
	modules, drivers := dracutModules, dracutDrivers
	if spec.SysextSysroot {
		modules += " systemd-sysext"
		drivers += " dm-mod dm-verity"
	}
	oemUnit := oemMountUnit
	if spec.LogWrites {
		modules += " dm"
		drivers += " dm-mod dm-log-writes"
		oemUnit = strings.Replace(oemMountUnit, "What=/dev/disk/by-partlabel/OEM", "What="+lwOEMDev, 1)
	}
	var certs strings.Builder
	for _, c := range spec.Certs {
		fmt.Fprintf(&certs, "%s\n%s", c.Name, c.CertPEM(t))
	}
	ckey := fmt.Sprintf("%v|%v|%v|%s|%s|%s", spec.Ours, spec.SysextSysroot, spec.LogWrites, in.KVer, in.Rootfs, certs.String())
	initrdMu.Lock()
	defer initrdMu.Unlock()
	if p, ok := initrdCache[ckey]; ok {
		return p
	}
	h := sha256.New()
	fmt.Fprintf(h, "modules=%s\ndrivers=%s\nkver=%s\nours=%v\n%s", modules, drivers, in.KVer, withOurs, oemUnit)
	if spec.LogWrites {
		fmt.Fprintf(h, "logwrites=%v\n", lwUnits)
	}
	if certs.Len() > 0 {
		fmt.Fprintf(h, "certs=%s", certs.String())
	}
	if m := in.manifest(); m != nil {
		h.Write(m)
	}
	var stage string
	var caPEM []byte
	if withOurs {
		// Our dracut module installs the OS's CA bundle (for the fetcher's
		// HTTPS): the forky test root has none, so the fetch test's CA is
		// the bundle of every test initramfs.
		caPEM = TestFetchCA(t).CertPEM
		fmt.Fprintf(h, "ca=%s\n", caPEM)
		var sum string
		stage, sum = InstallTree(t, in.Arch)
		fmt.Fprintf(h, "install=%s\n", sum)
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(in.Cache, "initrd", "initrd-"+sum+".img")
	if _, err := os.Stat(out); err == nil {
		t.Logf("initrd: cached %s", out)
		initrdCache[ckey] = out
		return out
	}

	// An overlay over the cached root keeps it pristine; the test process
	// runs in a private mount namespace, so nothing here reaches the host.
	base, err := os.MkdirTemp("", "ext-setup-root-dracut-")
	if err != nil {
		t.Fatal(err)
	}
	upper, wdir, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	mkdirs(t, upper)
	mkdirs(t, wdir)
	mkdirs(t, merged)
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+in.Rootfs+",upperdir="+upper+",workdir="+wdir); err != nil {
		t.Fatalf("mount overlay on %s: %v", merged, err)
	}
	var mounted []string
	mounted = append(mounted, merged)
	defer func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			unix.Unmount(mounted[i], unix.MNT_DETACH)
		}
		os.RemoveAll(base)
	}()
	if stage != "" {
		run(t, "cp", "-a", stage+"/.", merged+"/")
	}
	if caPEM != nil {
		writeFile(t, merged, "etc/ssl/certs/ca-certificates.crt", string(caPEM), 0o644)
	}
	kmods := filepath.Join(merged, "usr/lib/modules", in.KVer)
	mkdirs(t, kmods)
	binds := [][2]string{{filepath.Join(in.Modules, in.KVer), kmods}, {"/proc", filepath.Join(merged, "proc")}, {"/sys", filepath.Join(merged, "sys")}, {"/dev", filepath.Join(merged, "dev")}}
	for _, b := range binds {
		if err := unix.Mount(b[0], b[1], "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s on %s: %v", b[0], b[1], err)
		}
		mounted = append(mounted, b[1])
	}
	inc := filepath.Join(merged, "tmp/extsr-include")
	writeFile(t, inc, "usr/lib/systemd/system/sysroot-oem.mount", oemUnit, 0o644)
	if spec.LogWrites {
		includeLogWrites(t, inc)
	}
	symlink(t, inc, "usr/lib/systemd/system/initrd-fs.target.wants/sysroot-oem.mount", "../sysroot-oem.mount")
	for _, c := range spec.Certs {
		writeFile(t, inc, "etc/verity.d/extsr-"+c.Name+".crt", c.CertPEM(t), 0o644)
	}
	args := []string{merged, "dracut", "--include", "/tmp/extsr-include", "/", "--force", "--quiet", "--no-hostonly", "--no-hostonly-cmdline", "--kver", in.KVer,
		"--drivers", drivers, "--filesystems", "ext4 erofs", "-m", modules, "--compress", "zstd"}
	if withOurs {
		args = append(args, "--add", ourModule)
	}
	args = append(args, "/tmp/initrd.img")
	run(t, "chroot", args...)
	mkdirs(t, filepath.Dir(out))
	tmp := out + ".tmp"
	run(t, "cp", filepath.Join(merged, "tmp/initrd.img"), tmp)
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	prune(filepath.Join(filepath.Dir(out), "initrd-*.img"), 10)
	st, _ := os.Stat(out)
	t.Logf("initrd: built %s (%d KiB)", out, st.Size()>>10)
	initrdCache[ckey] = out
	return out
}

var (
	installMu    sync.Mutex
	installTrees = map[string][2]string{} // arch -> tree, hash
)

// InstallTree runs `make install DESTDIR=<temp dir>` in the repository, as a
// distribution would, once per test process and guest architecture, and
// returns the tree and its content hash. For arm64 it runs with
// GOARCH=arm64 and BIN in the temporary directory, so the static arm64
// binary is built and installed without touching the checkout's bin/. The
// tree is kept in $cache/<arch's cache>/install/HASH (older ones are
// removed) so that every scenario of a run uses the same binary even while
// the working tree changes. It fails t unless the dracut module landed
// under usr/lib/dracut/modules.d and the binary is built for arch.
func InstallTree(t testing.TB, arch string) (string, string) {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	if tr, ok := installTrees[arch]; ok {
		return tr[0], tr[1]
	}
	stage := t.TempDir()
	cmd := exec.Command("make", "-C", repoRoot(t), "install", "DESTDIR="+stage)
	if arch != "amd64" {
		cmd.Args = append(cmd.Args, "BIN="+filepath.Join(t.TempDir(), "ext-setup-root"))
		cmd.Env = append(os.Environ(), "GOARCH="+arch, "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install DESTDIR=%s: %v\n%s", stage, err, out)
	}
	found := false
	ents, _ := os.ReadDir(filepath.Join(stage, "usr/lib/dracut/modules.d"))
	for _, e := range ents {
		found = found || strings.HasSuffix(e.Name(), ourModule)
	}
	if !found {
		t.Fatalf("make install DESTDIR=%s installed no dracut module *%s under usr/lib/dracut/modules.d", stage, ourModule)
	}
	requireBinaryArch(t, filepath.Join(stage, "usr/bin/ext-setup-root"), arch)
	h := sha256.New()
	hashTree(t, h, stage)
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	base := filepath.Join(cacheBase(), guestArches[arch].cacheSub, "install")
	dest := filepath.Join(base, sum)
	if _, err := os.Stat(dest); err != nil {
		mkdirs(t, base)
		tmp := dest + ".tmp"
		os.RemoveAll(tmp)
		run(t, "cp", "-a", stage, tmp)
		if err := os.Rename(tmp, dest); err != nil {
			t.Fatal(err)
		}
	}
	// Other trees go only when they are old: a test process of another
	// checkout may still be building images from its own.
	old, _ := os.ReadDir(base)
	for _, e := range old {
		if info, err := e.Info(); err == nil && e.Name() != sum && time.Since(info.ModTime()) > 6*time.Hour {
			os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	installTrees[arch] = [2]string{dest, sum}
	return dest, sum
}

// elfMachines maps a guest architecture to its ELF machine.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// requireBinaryArch fails t unless bin is a static ELF executable for arch:
// the initramfs of that guest must carry a binary its CPU runs without a
// loader.
func requireBinaryArch(t testing.TB, bin, arch string) {
	t.Helper()
	if err := binaryArchError(bin, arch); err != nil {
		t.Fatal(err)
	}
}

// binaryArchError says why bin is not a static ELF executable for arch
// (nil if it is).
func binaryArchError(bin, arch string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("installed binary: %w", err)
	}
	defer f.Close()
	if f.Machine != elfMachines[arch] {
		return fmt.Errorf("installed binary %s is for %v, want %v (%s)", bin, f.Machine, elfMachines[arch], arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("installed binary %s is dynamically linked (PT_INTERP): the initramfs needs a static one", bin)
		}
	}
	return nil
}

// hashTree feeds every path, mode, symlink target and file content under
// dir into h in a stable order.
func hashTree(t testing.TB, h io.Writer, dir string) {
	t.Helper()
	var paths []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(h, "%s %o\n", rel, st.Mode())
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			fmt.Fprintf(h, "-> %s\n", l)
		case st.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(h, f)
			f.Close()
		}
	}
}

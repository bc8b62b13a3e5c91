package qemu

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// The measured boots: OVMF (UEFI firmware), a software TPM 2.0 (swtpm) and
// a unified kernel image (UKI: systemd-stub, the forky kernel, the dracut
// initramfs, the command line) with a signed PCR 11 policy for the initrd
// phase, which systemd 262 needs to initialise its NvPCRs. OVMF and swtpm
// are host packages (scripts/ci-deps.sh); the UKI is built with ukify from
// the forky root that scripts/prepare-uefi.sh prepares (rootfs-uefi,
// kernel-uefi).

// ovmfDirs are where Debian's ovmf package puts the firmware.
var ovmfDirs = []string{"/usr/share/OVMF", "/usr/share/ovmf"}

// UEFIHost is the host side of a measured boot.
type UEFIHost struct {
	Code    string // OVMF code (read-only pflash)
	Vars    string // OVMF variable store template (copied per boot)
	Vmlinuz string // the forky kernel with its EFI stub (kernel-uefi/vmlinuz)
}

// RequireUEFI gates t on swtpm, OVMF, mtools and the prepared UEFI inputs
// (make qemu-prepare-uefi), and returns in switched to rootfs-uefi (its
// dracut builds the initramfs, its /usr is the booted OS, so the booted
// system has the TPM tools too) with the host side.
func RequireUEFI(t testing.TB, in *Inputs) (*Inputs, *UEFIHost) {
	t.Helper()
	testutil.RequireTool(t, "swtpm", "mcopy", "mmd", "mkfs.vfat", "sgdisk")
	h := &UEFIHost{}
	for _, d := range ovmfDirs {
		code, vars := filepath.Join(d, "OVMF_CODE_4M.fd"), filepath.Join(d, "OVMF_VARS_4M.fd")
		if _, err := os.Stat(code); err == nil {
			h.Code, h.Vars = code, vars
			break
		}
	}
	if h.Code == "" {
		testutil.Gate(t, "OVMF firmware (OVMF_CODE_4M.fd in %v; run scripts/ci-deps.sh: package ovmf)", ovmfDirs)
		return nil, nil
	}
	u := WithRootfs(t, in, "uefi")
	if u == nil {
		return nil, nil
	}
	h.Vmlinuz = filepath.Join(in.Cache, "kernel-uefi", "vmlinuz")
	kv, err := os.ReadFile(filepath.Join(in.Cache, "kernel-uefi", "version"))
	if err != nil || strings.TrimSpace(string(kv)) != in.KVer {
		testutil.Gate(t, "UEFI kernel %s of release %s (run make qemu-prepare-uefi): %v", h.Vmlinuz, in.KVer, err)
		return nil, nil
	}
	for _, p := range []string{h.Vars, h.Vmlinuz, filepath.Join(u.Rootfs, "usr/bin/ukify"), filepath.Join(u.Rootfs, "usr/lib/systemd/systemd-pcrextend")} {
		if _, err := os.Stat(p); err != nil {
			testutil.Gate(t, "UEFI input %s (run make qemu-prepare-uefi): %v", p, err)
			return nil, nil
		}
	}
	return u, h
}

// UEFIBoot is what BootSpec needs for a firmware boot instead of -kernel:
// the firmware, a writable copy of its variables, the disk holding the
// ESP, and the TPM's control socket.
type UEFIBoot struct {
	Code, Vars, ESP, TPMSocket string
}

// qemuArgs returns QEMU's arguments for u: the q35 machine (OVMF's
// reference board), OVMF as pflash, the ESP disk as the first boot
// device, and the swtpm emulator as a TPM 2.0 CRB device.
func (u *UEFIBoot) qemuArgs() []string {
	return append([]string{
		"-machine", "q35",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + u.Code,
		"-drive", "if=pflash,format=raw,unit=1,file=" + u.Vars,
		"-drive", "if=none,id=esp,format=raw,file=" + u.ESP,
		"-device", "virtio-blk-pci,drive=esp,bootindex=0",
	}, TPMArgs(u.TPMSocket)...)
}

// TPMArgs are QEMU's arguments for a TPM 2.0 CRB device backed by the
// swtpm whose control socket is sock.
func TPMArgs(sock string) []string {
	return []string{
		"-chardev", "socket,id=chrtpm,path=" + sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-crb,tpmdev=tpm0",
	}
}

// NewUEFIBoot prepares one boot: a fresh copy of the OVMF variables and a
// fresh swtpm (state in its own directory: every boot starts from a TPM
// reset, as a power cycle gives a real machine, and from an empty NV
// space, so each boot defines its NvPCRs anew). swtpm is stopped when t
// ends.
func NewUEFIBoot(t testing.TB, h *UEFIHost, esp string) *UEFIBoot {
	t.Helper()
	dir := t.TempDir()
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	run(t, "cp", h.Vars, vars)
	return &UEFIBoot{Code: h.Code, Vars: vars, ESP: esp, TPMSocket: StartSWTPM(t, filepath.Join(dir, "tpm"))}
}

// StartSWTPM starts `swtpm socket --tpm2` with its state in dir and
// returns its control socket (QEMU's -chardev). --terminate makes it exit
// when QEMU closes the control connection; t's cleanup kills it in any
// case and waits for it.
func StartSWTPM(t testing.TB, dir string) string {
	t.Helper()
	mkdirs(t, dir)
	sock := filepath.Join(dir, "swtpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--ctrl", "type=unixio,path="+sock, "--terminate",
		"--log", "level=1,file="+filepath.Join(dir, "swtpm.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		select {
		case err := <-done:
			t.Fatalf("swtpm exited before creating %s: %v (log %s)", sock, err, filepath.Join(dir, "swtpm.log"))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not create %s in 10 s", sock)
		}
	}
}

// PCRKey is an RSA key pair for ukify's PCR policy signatures, written as
// PEM files.
type PCRKey struct{ Private, Public string }

// NewPCRKey makes a throwaway 2048-bit RSA PCR signing key in dir.
func NewPCRKey(t testing.TB, dir string) PCRKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := PCRKey{Private: filepath.Join(dir, "pcr.key"), Public: filepath.Join(dir, "pcr.pub")}
	writeFile(t, dir, "pcr.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})), 0o600)
	writeFile(t, dir, "pcr.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})), 0o644)
	return p
}

// BuildUKI runs `ukify build` in an overlay of in's root (rootfs-uefi,
// which has ukify and systemd-stub 262): the kernel, the initramfs and the
// command line, with PCR 11 policies signed by key for the default phases
// and, with --sign-initrd-pcrs, one that only the initrd phase satisfies
// (systemd 262's NvPCR write policy authorises that one). It returns the
// UKI, in a temporary directory of t.
func BuildUKI(t testing.TB, in *Inputs, h *UEFIHost, initrd, cmdline string, key PCRKey) string {
	t.Helper()
	merged := chrootOverlay(t, in.Rootfs)
	work := filepath.Join(merged, "tmp/uki")
	mkdirs(t, work)
	for _, f := range [][2]string{{h.Vmlinuz, "vmlinuz"}, {initrd, "initrd.img"}, {key.Private, "pcr.key"}, {key.Public, "pcr.pub"}} {
		run(t, "cp", f[0], filepath.Join(work, f[1]))
	}
	run(t, "chroot", merged, "ukify", "build",
		"--linux=/tmp/uki/vmlinuz", "--initrd=/tmp/uki/initrd.img", "--uname="+in.KVer,
		"--cmdline="+cmdline,
		"--pcr-private-key=/tmp/uki/pcr.key", "--pcr-public-key=/tmp/uki/pcr.pub",
		"--sign-initrd-pcrs", "--pcr-banks=sha256",
		"--output=/tmp/uki/uki.efi")
	out := filepath.Join(t.TempDir(), "uki.efi")
	run(t, "cp", filepath.Join(work, "uki.efi"), out)
	st, _ := os.Stat(out)
	t.Logf("UKI: %s (%d KiB)", out, st.Size()>>10)
	return out
}

// ESPImage writes a GPT disk with one EFI system partition holding uki as
// EFI/BOOT/BOOTX64.EFI, the removable-media path OVMF boots without any
// boot entry (mkfs.vfat and mtools: no mount needed).
func ESPImage(t testing.TB, uki string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "esp.img")
	st, err := os.Stat(uki)
	if err != nil {
		t.Fatal(err)
	}
	// The UKI plus room for FAT32's minimum and the GPT.
	size := (st.Size()>>20 + 48) << 20
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", "-n", "1:2048:0", "-t", "1:ef00", "-c", "1:ESP", img)
	run(t, "mkfs.vfat", "-F", "32", "-n", "ESP", "--offset", "2048", img, strconv.FormatInt((size>>10)-1024-1, 10))
	part := img + "@@1M"
	run(t, "mmd", "-i", part, "::/EFI", "::/EFI/BOOT")
	run(t, "mcopy", "-i", part, uki, "::/EFI/BOOT/BOOTX64.EFI")
	return img
}

// chrootOverlay mounts an overlay over root (kept pristine; the test
// process runs in a private mount namespace) with /proc, /sys and /dev
// bound in, and returns it; t's cleanup unmounts everything.
func chrootOverlay(t testing.TB, root string) string {
	t.Helper()
	base := t.TempDir()
	upper, wdir, merged := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{upper, wdir, merged} {
		mkdirs(t, d)
	}
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+root+",upperdir="+upper+",workdir="+wdir); err != nil {
		t.Fatalf("mount overlay on %s: %v", merged, err)
	}
	mounted := []string{merged}
	t.Cleanup(func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			unix.Unmount(mounted[i], unix.MNT_DETACH)
		}
	})
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if err := unix.Mount(d, filepath.Join(merged, d), "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s into %s: %v", d, merged, err)
		}
		mounted = append(mounted, filepath.Join(merged, d))
	}
	return merged
}

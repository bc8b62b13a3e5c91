package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestUEFIPlumbing checks the pieces of a measured boot that need no
// guest: the ESP holds the UKI byte for byte at the removable-media path,
// the UEFI boot's QEMU arguments name the firmware, ESP and TPM, and
// swtpm is running while the test runs and gone after its cleanup.
func TestUEFIPlumbing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts swtpm")
	}
	testutil.RequireTool(t, "swtpm", "mcopy", "mmd", "mtype", "mkfs.vfat", "sgdisk")
	uki := filepath.Join(t.TempDir(), "uki.efi")
	payload := bytes.Repeat([]byte("MZ not really a UKI\n"), 40000)
	if err := os.WriteFile(uki, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	esp := ESPImage(t, uki)
	got, err := exec.Command("mtype", "-i", esp+"@@1M", "::/EFI/BOOT/BOOTX64.EFI").Output()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("EFI/BOOT/BOOTX64.EFI on the ESP: %d bytes, %v; want the UKI's %d", len(got), err, len(payload))
	}
	if out := run(t, "sgdisk", "-i", "1", esp); !strings.Contains(out, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
		t.Errorf("partition 1 is not an EFI system partition:\n%s", out)
	}

	var pid int
	t.Run("swtpm", func(t *testing.T) {
		sock := StartSWTPM(t, filepath.Join(t.TempDir(), "tpm"))
		u := &UEFIBoot{Code: "code.fd", Vars: "vars.fd", ESP: esp, TPMSocket: sock}
		args := strings.Join(u.qemuArgs(), " ")
		for _, want := range []string{"file=code.fd", "readonly=on", "file=vars.fd", "file=" + esp, "bootindex=0", "path=" + sock, "tpm-crb"} {
			if !strings.Contains(args, want) {
				t.Errorf("QEMU arguments lack %q: %s", want, args)
			}
		}
		pid = swtpmPID(t, sock)
	})
	if pid == 0 {
		t.Fatal("no swtpm process found serving the socket")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("swtpm (pid %d) still runs after its test's cleanup", pid)
	}
}

// swtpmPID finds the swtpm process whose command line names sock.
func swtpmPID(t *testing.T, sock string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(b, []byte("swtpm\x00")) || !bytes.Contains(b, []byte(sock)) {
			continue
		}
		var pid int
		for _, c := range e.Name() {
			pid = pid*10 + int(c-'0')
		}
		return pid
	}
	return 0
}

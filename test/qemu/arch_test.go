package qemu

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestArm64Handler(t *testing.T) {
	const ours = "enabled\ninterpreter /var/cache/ext-setup-root/qemu-user/usr/bin/qemu-aarch64\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
	for _, c := range []struct {
		name, file string
		want       bool
	}{
		{"registered", ours, true},
		{"disabled", strings.Replace(ours, "enabled", "disabled", 1), false},
		{"no fix-binary flag", strings.Replace(ours, "flags: PF", "flags: P", 1), false},
		{"x86-64 magic", strings.Replace(ours, "0200b700", "02003e00", 1), false},
		{"empty", "", false},
	} {
		if got := arm64Handler(strings.NewReader(c.file)); got != c.want {
			t.Errorf("%s: arm64Handler = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestBinaryArchError: an initramfs for arm64 must not get the host's
// amd64 binary (what `make install` embedded before it ran with
// GOARCH=arm64 for the arm64 guest).
func TestBinaryArchError(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("checks an amd64 executable against arm64; host is %s", runtime.GOARCH)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := binaryArchError(self, "arm64"); err == nil || !strings.Contains(err.Error(), "EM_X86_64") {
		t.Errorf("amd64 test binary checked as arm64: %v, want an EM_X86_64 mismatch", err)
	}
	if err := binaryArchError(filepath.Join(t.TempDir(), "missing"), "arm64"); err == nil {
		t.Error("a missing binary passed")
	}
}

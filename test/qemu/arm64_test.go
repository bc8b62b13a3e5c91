package qemu

import (
	"strings"
	"testing"
	"time"
)

// TestQEMUArm64 boots the A/B scenario of TestQEMUFirstBoot and
// TestQEMUUpdateRollback on Flatcar's second architecture: an arm64 guest
// under qemu-system-aarch64 (TCG, virt board) with Debian forky's arm64
// kernel, /usr and ROOT from the forky root bootstrapped for arm64, and a
// dracut initramfs built inside that root (under qemu-user) with the
// static arm64 binary that `make install` (GOARCH=arm64) put there and
// `dracut --add ext-setup-root`. Boot 1, slot A on a fresh disk: the
// first-boot checks (the default confext merged into a mutable, writable
// /etc; the booted systemd-confext skips its refresh) and the slot checks
// (OEM image on the OEM partition linked, OEM sysext and flatcar-foo
// merged, the OEM service ran, systemd-sysext skips too). Boot 2, the
// update to slot B (VERSION 1001.0.0): the links flip to B's OEM and
// flatcar-foo images, B's default confext is merged, and a file the user
// wrote to /etc in boot 1 is still there.
//
// Opt-in (EXT_SETUP_ROOT_QEMU_ARM64=1; make test-long): the boots take
// minutes each under TCG on two shared cores (docs/qemu.md, "arm64").
func TestQEMUArm64(t *testing.T) {
	in := RequireInputsArm64(t)
	spec := updateDisk(t, in)
	writeFile(t, spec.Root, "etc/extsr/check.d/10-persist", persistHook, 0o755)
	m := NewMachine(t, in, spec)
	m.Timeout = 45 * time.Minute
	written := ""
	for i, step := range []struct{ slot, version, what string }{
		{"A", VersionA, "first boot of slot A"},
		{"B", VersionB, "update: slot B with its OEM image"},
	} {
		boot := i + 1
		t.Logf("arm64 boot %d: %s", boot, step.what)
		rep := m.Boot(step.slot, "")
		if got := rep.Get("kernel"); got != in.KVer || !strings.HasSuffix(got, "-arm64") {
			t.Errorf("boot %d: booted kernel %q, want the arm64 kernel %s", boot, got, in.KVer)
		}
		checkSlot(t, rep, boot, step.version)
		checkDefaultConfext(t, rep, boot, step.version)
		written = checkPersist(t, rep, boot, written)
		if t.Failed() {
			t.Fatalf("arm64 %s failed; log %s", step.what, rep.LogPath)
		}
	}
}

package qemu

import (
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/mount"
)

// TestQEMUKernelMatrix boots the update disk (A/B images of the OEM and a
// Flatcar sysext, the default confext) with Debian's LTS kernels, each
// with its own modules in the initramfs and in /usr: boot 1 slot A (first
// merge of /etc, links to A's images, both sysexts merged, the booted
// systemd skips its refreshes), boot 2 slot B (links flip to B's images,
// the post stage replaces the /etc merge after the sysext merge, hand-off
// again). Forky's kernel runs the same checks in TestQEMUUpdateRollback and
// TestQEMUFirstBoot. Each boot also checks that the kernel feature table
// ext-setup-root probed in the initrd is the one mount.Expected gives for
// that release, and that a kernel without MOVE_MOUNT_BENEATH (6.1) reports
// its replacement as a gap in the post stage's summary line while one with
// it does not.
func TestQEMUKernelMatrix(t *testing.T) {
	base := RequireInputs(t)
	for _, k := range MatrixKernels {
		t.Run(k.Name, func(t *testing.T) {
			in := WithKernel(t, base, k)
			m := NewMachine(t, in, updateDisk(t, in))
			// Boots of old kernels under a loaded machine took up to 290 s.
			m.Timeout = 12 * time.Minute
			for i, step := range []struct{ slot, version, what string }{
				{"A", VersionA, "first boot of slot A"},
				{"B", VersionB, "update: slot B"},
			} {
				rep := m.Boot(step.slot, "ext-setup-root.debug ext-setup-root.late-refresh=ours")
				t.Logf("%s boot %d (%s): kernel %s", k.Name, i+1, step.what, rep.Get("kernel"))
				if got := rep.Get("kernel"); got != in.KVer {
					t.Errorf("booted kernel %q, want %s", got, in.KVer)
				}
				checkMatrixSlot(t, rep, i+1, step.version)
				checkKernelTable(t, rep, in.KVer)
				if t.Failed() {
					t.Fatalf("%s: %s failed; log %s", k.Name, step.what, rep.LogPath)
				}
			}
		})
	}
}

// checkKernelTable compares the "kernel features: ..." debug line of the
// initrd stages with mount.Expected for kver, and the gap count of the
// post stage's summary with the table's Beneath.
func checkKernelTable(t *testing.T, rep *Report, kver string) {
	t.Helper()
	v, ok := mount.ParseRelease(kver)
	if !ok {
		t.Fatalf("kernel release %q", kver)
	}
	want := mount.Expected(v)
	want.Release = kver
	var lines []string
	for _, key := range []string{"esr_log", "esr_unit", "esr_kmsg"} {
		for _, l := range rep.All(key) {
			if i := strings.Index(l, "kernel features: "); i >= 0 {
				lines = append(lines, l[i+len("kernel features: "):])
			}
		}
	}
	if len(lines) == 0 {
		t.Errorf("no 'kernel features:' debug line from ext-setup-root")
		return
	}
	for _, got := range lines {
		if got != want.String() {
			t.Errorf("probed kernel features differ from mount.Expected(%v):\n got: %s\nwant: %s", v, got, want.String())
			break
		}
	}
	post, ok := rep.Stages()["post"]
	if !ok {
		return
	}
	gap := strings.Contains(post.Line, "replaced with a gap")
	t.Logf("post stage: %s", post.Line)
	after := ""
	if i := strings.Index(post.Line, "confext after sysext: "); i >= 0 {
		after = post.Line[i:]
		if j := strings.Index(after, ", sysext record"); j >= 0 {
			after = after[:j]
		}
	}
	replaced := after != "" && !strings.Contains(after, "unchanged")
	switch {
	case gap && want.Beneath:
		t.Errorf("post stage %q reports a gap on a kernel with MOVE_MOUNT_BENEATH", post.Line)
	case replaced && !want.Beneath && !gap:
		t.Errorf("post stage %q replaced /etc on a kernel without MOVE_MOUNT_BENEATH but reports no gap", post.Line)
	}
}

// checkMatrixSlot is checkSlot with the hand-off proven through
// ext-setup-root's late refresh instead of systemd's skip line.
func checkMatrixSlot(t *testing.T, rep *Report, boot int, v string) {
	t.Helper()
	checkSlotImages(t, rep, v)
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext version="+v) {
		t.Errorf("default confext file not in /etc: %q", rep.All("file"))
	}
	st := rep.Stages()
	for _, c := range []struct{ stage, class, h, idkey string }{
		{"late-confext", "confext", "/etc", "etc_mount_id"},
		{"late-sysext", "sysext", "/usr", "usr_mount_id"},
	} {
		s, ok := st[c.stage]
		switch {
		case !ok:
			t.Errorf("boot %d: no %s stage summary", boot, c.stage)
		case s.Result != "finished" || !strings.Contains(s.Line, "unchanged"):
			t.Errorf("boot %d: %s did not find the initrd's merge unchanged: %s", boot, c.stage, s.Line)
		}
		want, got := rep.InitrdMountID(c.class, c.h), rep.Get(c.idkey)
		if want == "" || got != want {
			t.Errorf("boot %d: %s is mount id %q in the booted system, the initrd's %s merge was %q", boot, c.h, got, c.class, want)
		}
	}
}

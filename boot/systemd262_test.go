package boot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/paths"
	"github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

// TestBootThenSystemd262RefreshSkips is the hand-off the booted system
// depends on: after both initrd stages ran on a Flatcar-like root, the real
// systemd 262 `systemd-confext refresh` (what systemd-confext.service runs)
// finds the merge unchanged and skips, so /etc is never unmounted. The root
// carries our confext.conf.d drop-in (Mutable=auto), as Flatcar's
// confext.conf. Then the same for `systemd-sysext refresh`: it must skip
// too, also when a sysext image is stored under /etc (Flatcar extensions in
// /etc/flatcar/sysext), where the confext refresh after the sysext merge
// gives that image a new mount id and the post stage corrects the sysext
// record (extension.Rerecord).
func TestBootThenSystemd262RefreshSkips(t *testing.T) {
	t.Run("extension under etc", func(t *testing.T) { bootThenSystemd(t, true, true) })
	t.Run("oem sysext only", func(t *testing.T) { bootThenSystemd(t, false, true) })
}

func bootThenSystemd(t *testing.T, zfs, wantSysextSkip bool) {
	realEngineEnv(t)
	e := systemd262.Require(t, "mkfs.ext4", "losetup")
	// ext4, not tmpfs: systemd wants a block device behind the root.
	r, cleanup, err := e.NewRoot(testutil.LoopFS(t, 64*1024, "ext4"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	paths.StateDir = filepath.Join(r.Slot, "ext-setup-root-state")
	flatcarFixture(t, r.Host)
	// The drop-in `make install` puts into the OS (units/host).
	dropin, err := os.ReadFile("../units/host/confext.conf.d/10-ext-setup-root.conf")
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, r.Host, map[string]string{"usr/lib/systemd/confext.conf.d/10-ext-setup-root.conf": string(dropin)})
	if !zfs {
		os.WriteFile(filepath.Join(r.Host, "usr/share/flatcar/enabled-sysext.conf"), nil, 0o644)
	}

	runStage(t, r.Host, StagePre)
	_, log := runStage(t, r.Host, StagePost)
	if !isOverlay(t, filepath.Join(r.Host, "usr")) {
		t.Fatalf("sysext not merged:\n%s", log)
	}

	res, err := e.Confext(nil, "--root="+r.In, "refresh")
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || !strings.Contains(res.Output, systemd262.SkipMessage) {
		t.Errorf("systemd-confext 262 refresh after the initrd stages did not skip:\n%s\nour log:\n%s", res, log)
	}
	if !isOverlay(t, filepath.Join(r.Host, "etc")) {
		t.Errorf("/etc not merged after systemd's refresh")
	}

	cmd := exec.Command("/usr/bin/systemd-sysext", "--root="+r.In, "refresh")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/usr/sbin:/bin:/sbin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: e.Chroot}
	out, err := cmd.CombinedOutput()
	t.Logf("systemd-sysext 262 refresh after the initrd stages: %v\n%s", err, out)
	if err != nil {
		t.Errorf("systemd-sysext refresh failed: %v", err)
	}
	if skipped := strings.Contains(string(out), systemd262.SkipMessage); skipped != wantSysextSkip {
		t.Errorf("systemd-sysext refresh skipped=%v, want %v; our log:\n%s", skipped, wantSysextSkip, log)
	}
	if zfs && !strings.Contains(log, "sysext record: updated") {
		t.Errorf("the post stage did not correct the sysext record after /etc was replaced:\n%s", log)
	}
}

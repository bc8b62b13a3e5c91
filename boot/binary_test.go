package boot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestBootBinary runs the built binary as the units do, on a Flatcar-like
// root, with the kernel command line and state dir redirected, and checks
// the summary lines the QEMU tests parse and the command line switches.
func TestBootBinary(t *testing.T) {
	realEngineEnv(t)
	bin := testutil.BuildTestHooksBinary(t) // EXT_SETUP_ROOT_PROC_CMDLINE is a test-only redirection
	root := flatcarRoot(t)
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	state := t.TempDir()
	boot := func(stage, kernelCmdline string) (string, error) {
		os.WriteFile(cmdline, []byte(kernelCmdline+"\n"), 0o644)
		cmd := exec.Command(bin, "boot", "--stage="+stage, "--root="+root)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "EXT_SETUP_ROOT_LOG=stderr",
			"EXT_SETUP_ROOT_PROC_CMDLINE=" + cmdline, "EXT_SETUP_ROOT_STATE_DIR=" + state}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := boot("post", "quiet ext-setup-root.stage.post=0")
	if err != nil || !strings.Contains(out, "stage post finished in ") || !strings.Contains(out, "disabled by ext-setup-root.stage.post=0") {
		t.Fatalf("disabled post: %v\n%s", err, out)
	}
	out, err = boot("pre", "ext-setup-root.dry-run")
	if err != nil || !strings.Contains(out, "dry run: would merge confexts") || isOverlay(t, filepath.Join(root, "etc")) {
		t.Fatalf("dry-run pre: %v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(root, "var/lib/extensions.mutable")); err == nil {
		t.Errorf("dry run created the mutable dir")
	}
	out, err = boot("pre", "root=LABEL=ROOT")
	if err != nil || !summaryRE.MatchString(out) || !isOverlay(t, filepath.Join(root, "etc")) {
		t.Fatalf("pre: %v\n%s", err, out)
	}
	out, err = boot("post", "systemd.sysext=0")
	if err != nil || !strings.Contains(out, "sysext: disabled by systemd.sysext=0") || isOverlay(t, filepath.Join(root, "usr")) {
		t.Fatalf("post with systemd.sysext=0: %v\n%s", err, out)
	}
	out, err = boot("post", "")
	if err != nil || !summaryRE.MatchString(out) || !isOverlay(t, filepath.Join(root, "usr")) {
		t.Fatalf("post: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

// TestSystemdAnalyzeVerify installs the units and drop-ins into a
// throw-away overlay of the systemd 262 chroot (the cached chroot itself is
// never written) and runs `systemd-analyze verify` there. verify reports
// most problems (unknown keys, bad values) as warnings with exit status 0,
// so any output at all fails the test.
func TestSystemdAnalyzeVerify(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mount", "chroot")
	chroot := systemd262.ChrootDir()
	if chroot == "" {
		testutil.Gate(t, "systemd 262 chroot missing (make systemd262-root, or set %s)", systemd262.RootEnv)
	}
	bin := testutil.BuildBinary(t)
	w := testutil.Tmpfs(t)
	for _, d := range []string{"u", "w", "m"} {
		os.Mkdir(filepath.Join(w, d), 0o755)
	}
	m := filepath.Join(w, "m")
	opts := "lowerdir=" + chroot + ",upperdir=" + w + "/u,workdir=" + w + "/w"
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, m).CombinedOutput(); err != nil {
		t.Fatalf("mount overlay: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", m).Run() })
	cp := func(src, dst string, mode os.FileMode) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst = filepath.Join(m, dst)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	cp(bin, "usr/bin/ext-setup-root", 0o755)
	const ud = "usr/lib/systemd/system/"
	cp("initrd/ext-setup-root-pre.service", ud+"ext-setup-root-pre.service", 0o644)
	cp("initrd/ext-setup-root-post.service", ud+"ext-setup-root-post.service", 0o644)
	for _, c := range []string{"confext", "sysext"} {
		d := "systemd-" + c + ".service.d/10-ext-setup-root.conf"
		cp("host/"+d, ud+d, 0o644)
	}
	cmd := exec.Command("chroot", m, "systemd-analyze", "verify", "--man=no",
		"ext-setup-root-pre.service", "ext-setup-root-post.service",
		"systemd-confext.service", "systemd-sysext.service")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The same invocation must complain about a broken copy, or the check
	// above proves nothing.
	b, _ := os.ReadFile("initrd/ext-setup-root-pre.service")
	broken := strings.Replace(string(b), "OnFailureJobMode=isolate", "OnFailureJobMode=isolat", 1)
	os.WriteFile(filepath.Join(m, ud, "ext-setup-root-broken.service"), []byte(broken), 0o644)
	out, _ = exec.Command("chroot", m, "systemd-analyze", "verify", "--man=no", "ext-setup-root-broken.service").CombinedOutput()
	if !strings.Contains(string(out), "OnFailureJobMode=isolat") {
		t.Errorf("verify did not flag a broken unit; output:\n%s", out)
	}
}

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
	testutil.RequireTool(t, "mount", "chroot", "systemctl")
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
	for _, u := range []string{"systemd-confext.service", "systemd-sysext.service",
		"systemd-sysext@.service", "systemd-sysupdate-notify-sysext@.service"} {
		d := u + ".d/10-ext-setup-root.conf"
		cp("host/"+d, ud+d, 0o644)
	}
	// The template drop-ins are verified on an instance, with the socket
	// units that start them.
	cmd := exec.Command("chroot", m, "systemd-analyze", "verify", "--man=no",
		"ext-setup-root-pre.service", "ext-setup-root-post.service",
		"systemd-confext.service", "systemd-sysext.service",
		"systemd-sysext@0.service", "systemd-sysupdate-notify-sysext@0.service",
		"systemd-sysext.socket", "systemd-sysupdate-notify-sysext.socket")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The initrd transaction as the dracut module wires it, with a stand-in
	// for Ignition's files stage ordered like the real one: no ordering
	// cycle (verify builds the start transaction of initrd.target).
	os.WriteFile(filepath.Join(m, "etc/initrd-release"), nil, 0o644)
	os.WriteFile(filepath.Join(m, ud, "ignition-files.service"), []byte("[Unit]\nDefaultDependencies=no\n"+
		"After=initrd-root-fs.target\nBefore=initrd-parse-etc.service\n[Service]\nType=oneshot\nExecStart=/bin/true\n"), 0o644)
	for _, args := range [][]string{
		{"add-requires", "initrd.target", "ext-setup-root-pre.service", "ext-setup-root-post.service", "ignition-files.service"},
		{"mask", "systemd-confext-sysroot.service", "systemd-sysext-sysroot.service"},
	} {
		if out, err := exec.Command("systemctl", append([]string{"-q", "--root=" + m}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("systemctl %v: %v\n%s", args, err, out)
		}
	}
	verifyInitrd := func() string {
		out, _ := exec.Command("chroot", m, "systemd-analyze", "verify", "--man=no", "initrd.target", "initrd-switch-root.target").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	if out := verifyInitrd(); out != "" {
		t.Errorf("initrd transaction: %s", out)
	}
	// Control: a cycle injected into a copy of the post unit is reported.
	post := filepath.Join(m, ud, "ext-setup-root-post.service")
	pb, _ := os.ReadFile(post)
	os.WriteFile(post, []byte(strings.Replace(string(pb), "Before=initrd.target", "Before=initrd.target initrd-root-fs.target", 1)), 0o644)
	if out := verifyInitrd(); !strings.Contains(out, "ordering cycle") {
		t.Errorf("verify did not report an injected ordering cycle: %q", out)
	}
	os.WriteFile(post, pb, 0o644)

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

package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

const moduleSetup = "../dracut/99ext-setup-root/module-setup.sh"

// runModule sources module-setup.sh in bash with dracut's helpers stubbed
// to record their calls, runs script, and returns the recorded lines.
func runModule(t *testing.T, sysroot, script string, env ...string) (string, error) {
	t.Helper()
	testutil.RequireTool(t, "bash")
	log := filepath.Join(t.TempDir(), "calls")
	// The initdir is a real directory (the module writes the default
	// .network file into it); it reads as /INITDIR in the returned calls.
	initdir := t.TempDir()
	stubs := `
inst_simple() { echo "inst_simple $*" >> "$CALLS"; [[ " ${FAIL_INST-} " != *" $1 "* ]]; }
dfatal() { echo "dfatal $*" >> "$CALLS"; }
inst_multiple() { echo "inst_multiple $*" >> "$CALLS"; }
inst_sysusers() { echo "inst_sysusers $*" >> "$CALLS"; }
instmods() { echo "instmods hostonly=[$hostonly] $*" >> "$CALLS"; }
systemctl_stub() { echo "systemctl $*" >> "$CALLS"; }
systemd-sysusers() { echo "systemd-sysusers $*" >> "$CALLS"; }
SYSTEMCTL=systemctl_stub
initdir=` + initdir + `
systemdsystemunitdir=/usr/lib/systemd/system
systemdutildir=/usr/lib/systemd
dracutsysrootdir=` + sysroot + `
hostonly=yes
`
	cmd := exec.Command("bash", "-euc", stubs+"source "+moduleSetup+"\n"+script)
	cmd.Env = append(append(os.Environ(), "CALLS="+log, "INITDIR="+initdir), env...)
	b, err := cmd.CombinedOutput()
	calls, _ := os.ReadFile(log)
	out := strings.ReplaceAll(string(calls)+string(b), initdir, "/INITDIR")
	return out, err
}

func TestDracutCheck(t *testing.T) {
	sys := t.TempDir()
	out, _ := runModule(t, sys, `set +e; check; echo "rc=$?"`)
	if !strings.Contains(out, "rc=1") {
		t.Errorf("without the binary check must return 1: %s", out)
	}
	os.MkdirAll(filepath.Join(sys, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(sys, "usr/bin/ext-setup-root"), []byte("#!/bin/true\n"), 0o755)
	out, _ = runModule(t, sys, `set +e; check; echo "rc=$?"`)
	if !strings.Contains(out, "rc=255") {
		t.Errorf("with the binary check must return 255 (include when asked): %s", out)
	}
	out, _ = runModule(t, sys, `depends`)
	if strings.TrimSpace(out) != "systemd systemd-initrd systemd-sysusers" {
		t.Errorf("depends: %q", out)
	}
	out, _ = runModule(t, sys, `ext_setup_root_network=no; depends`)
	if strings.TrimSpace(out) != "systemd systemd-initrd" {
		t.Errorf("depends with ext_setup_root_network=no: %q", out)
	}
}

func TestDracutInstall(t *testing.T) {
	out, err := runModule(t, "", "installkernel; install")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"instmods hostonly=[] overlay loop squashfs erofs dm-verity dm-mod",
		"inst_simple /usr/bin/ext-setup-root",
		"inst_simple /usr/lib/systemd/system/ext-setup-root-pre.service",
		"inst_simple /usr/lib/systemd/system/ext-setup-root-post.service",
		"systemctl -q --root /INITDIR add-requires initrd.target ext-setup-root-pre.service",
		"systemctl -q --root /INITDIR add-requires initrd.target ext-setup-root-post.service",
		"systemctl -q --root /INITDIR mask systemd-confext-sysroot.service",
		"systemctl -q --root /INITDIR mask systemd-sysext-sysroot.service",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing call %q in:\n%s", want, out)
		}
	}
}

// TestDracutWiringWithSystemctl runs the real systemctl's add-requires and
// mask on an initdir the way dracut does, and checks the resulting links.
func TestDracutWiringWithSystemctl(t *testing.T) {
	testutil.RequireTool(t, "systemctl")
	initdir := t.TempDir()
	ud := filepath.Join(initdir, "usr/lib/systemd/system")
	os.MkdirAll(ud, 0o755)
	for _, u := range []string{"ext-setup-root-pre.service", "ext-setup-root-post.service"} {
		b, _ := os.ReadFile("initrd/" + u)
		os.WriteFile(filepath.Join(ud, u), b, 0o644)
	}
	os.WriteFile(filepath.Join(ud, "initrd.target"), []byte("[Unit]\nDescription=x\n"), 0o644)
	os.WriteFile(filepath.Join(ud, "systemd-confext-sysroot.service"), []byte("[Service]\nExecStart=/bin/true\n"), 0o644)
	for _, args := range [][]string{
		{"add-requires", "initrd.target", "ext-setup-root-pre.service"},
		{"add-requires", "initrd.target", "ext-setup-root-post.service"},
		{"mask", "systemd-confext-sysroot.service"},
		{"mask", "systemd-sysext-sysroot.service"},
	} {
		if out, err := exec.Command("systemctl", append([]string{"-q", "--root", initdir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("systemctl %v: %v\n%s", args, err, out)
		}
	}
	for link, target := range map[string]string{
		"etc/systemd/system/initrd.target.requires/ext-setup-root-pre.service":  "/usr/lib/systemd/system/ext-setup-root-pre.service",
		"etc/systemd/system/initrd.target.requires/ext-setup-root-post.service": "/usr/lib/systemd/system/ext-setup-root-post.service",
		"etc/systemd/system/systemd-confext-sysroot.service":                    "/dev/null",
		"etc/systemd/system/systemd-sysext-sysroot.service":                     "/dev/null",
	} {
		if got, err := os.Readlink(filepath.Join(initdir, link)); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %s", link, got, err, target)
		}
	}
}

// TestDracutInstallFailureStopsDracut (issue 18 item 7): dracut does not
// look at install()'s status (module_install runs it in dracut's own
// shell and goes on), so a file that cannot be installed must stop the
// run with dfatal and exit, as dracut's own fatal paths do; before, the
// build went on and produced an initramfs without our units and masks.
// The module is called the way dracut calls it: sourced, not under -e,
// the status ignored.
func TestDracutInstallFailureStopsDracut(t *testing.T) {
	for _, missing := range []string{
		"/usr/bin/ext-setup-root",
		"/usr/lib/systemd/system/ext-setup-root-pre.service",
		"/usr/lib/systemd/system/ext-setup-root-post.service",
	} {
		out, err := runModule(t, "", `set +e; install; echo "dracut went on after install (status $?)"`, "FAIL_INST="+missing)
		if err == nil || strings.Contains(out, "dracut went on") {
			t.Errorf("%s missing: dracut was not stopped (%v):\n%s", missing, err, out)
		}
		if !strings.Contains(out, "dfatal ext-setup-root: cannot install "+missing) {
			t.Errorf("%s missing: no dfatal naming it:\n%s", missing, out)
		}
		if strings.Contains(out, "mask systemd-confext-sysroot.service") {
			t.Errorf("%s missing: install went on to the masks:\n%s", missing, out)
		}
	}
	// systemctl failing stops dracut the same way.
	out, err := runModule(t, "", `systemctl_stub() { echo "systemctl $*" >> "$CALLS"; return 1; }; set +e; install; echo "dracut went on"`)
	if err == nil || strings.Contains(out, "dracut went on") || !strings.Contains(out, "dfatal ext-setup-root: systemctl add-requires initrd.target ext-setup-root-pre.service failed") {
		t.Errorf("systemctl failure: %v\n%s", err, out)
	}
}

// TestDracutInstallNetwork (issue 15 item 4): the module installs what
// the fetcher starts on demand (networkd and its socket, resolved when
// present, the users, a DHCP .network file for en*/eth*, the CA bundle)
// and enables none of it; a missing CA bundle or networkd stops dracut;
// ext_setup_root_network=no leaves it all out.
func TestDracutInstallNetwork(t *testing.T) {
	out, err := runModule(t, "", `installkernel; install; cat "$INITDIR"/usr/lib/systemd/network/zz-ext-setup-root-default.network`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"instmods hostonly=[] virtio_net",
		"instmods hostonly=[yes] =drivers/net/ethernet",
		"inst_simple /usr/lib/systemd/systemd-networkd",
		"inst_simple /usr/lib/systemd/system/systemd-networkd.service",
		"inst_simple /usr/lib/systemd/system/systemd-networkd.socket",
		"inst_sysusers systemd-network.conf",
		"systemd-sysusers --root=/INITDIR",
		"inst_simple /etc/ssl/certs/ca-certificates.crt",
		"Name=en* eth*",
		"DHCP=yes",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "/usr/lib/systemd/systemd-resolved /usr/lib/systemd/system/systemd-resolved.service") {
		t.Errorf("resolved not installed (optionally):\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "systemctl") && (strings.Contains(l, "networkd") || strings.Contains(l, "resolved") || strings.Contains(l, " enable ")) {
			t.Errorf("a network unit is enabled: %q", l)
		}
	}
	for _, missing := range []string{"/etc/ssl/certs/ca-certificates.crt", "/usr/lib/systemd/systemd-networkd"} {
		out, err = runModule(t, "", `set +e; install; echo "dracut went on"`, "FAIL_INST="+missing)
		if err == nil || strings.Contains(out, "dracut went on") || !strings.Contains(out, "dfatal ext-setup-root: cannot install") || !strings.Contains(out, missing) {
			t.Errorf("%s missing: dracut not stopped naming it (%v):\n%s", missing, err, out)
		}
	}
	out, err = runModule(t, "", `ext_setup_root_ca_bundle=/etc/pki/tls/certs/ca-bundle.crt; install`)
	if err != nil || !strings.Contains(out, "inst_simple /etc/pki/tls/certs/ca-bundle.crt\n") {
		t.Errorf("ext_setup_root_ca_bundle not honoured (%v):\n%s", err, out)
	}
	out, err = runModule(t, "", `ext_setup_root_network=no; installkernel; install; ls "$INITDIR"/usr/lib/systemd/network 2>&1 || true`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, not := range []string{"networkd", "ca-certificates", "virtio_net", "sysusers"} {
		if strings.Contains(out, not) {
			t.Errorf("ext_setup_root_network=no: %q still installed:\n%s", not, out)
		}
	}
}

package abslots

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"golang.org/x/sys/unix"
)

// ReferenceDirEnv names the directory holding Flatcar's bootengine scripts
// (default: ../../shared/reference/flatcar-bootengine from this package).
const ReferenceDirEnv = "EXT_SETUP_ROOT_BOOTENGINE_DIR"

// referenceScript returns the path of initrd-setup-root-after-ignition or
// gates the test.
func referenceScript(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(ReferenceDirEnv)
	explicit := dir != ""
	if !explicit {
		dir = "../../shared/reference/flatcar-bootengine"
	}
	p, _ := filepath.Abs(filepath.Join(dir, "initrd-setup-root-after-ignition"))
	if _, err := os.Stat(p); err != nil {
		// The reference scripts are not part of this repository (they are
		// another project's code, kept beside the checkout for differential
		// tests only). Their absence skips the differential test, and fails
		// it under EXT_SETUP_ROOT_REQUIRE_ALL=1 like every other missing
		// prerequisite: CI must provide them (the checkout's ../shared, or
		// EXT_SETUP_ROOT_BOOTENGINE_DIR).
		how := "the default beside the checkout"
		if explicit {
			how = ReferenceDirEnv
		}
		testutil.Gate(t, "Flatcar reference script not found at %s (%s; set %s)", p, how, ReferenceDirEnv)
	}
	return p
}

// bashEnv is a chroot in which the reference script sees /sysroot (the
// fixture) and /sysusr/usr/bin, with the host's /usr for its tools. It
// lives on a tmpfs in the test's private mount namespace.
type bashEnv struct {
	dir    string
	script string
}

func newBashEnv(t testing.TB, fixture string) *bashEnv {
	t.Helper()
	script := referenceScript(t)
	testutil.RequireTool(t, "bash", "grep", "sed", "realpath", "cut", "mv", "ln")
	e := &bashEnv{dir: testutil.Tmpfs(t)}
	for _, d := range []string{"usr", "dev", "proc", "tmp", "sysroot", "sysusr", "etc"} {
		if err := os.MkdirAll(filepath.Join(e.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		os.Symlink("usr/"+l, filepath.Join(e.dir, l))
	}
	// The script's usrbin() runs tools as /sysusr/usr/bin/NAME (the real
	// /usr in Flatcar's initrd); here that is the host's /usr.
	os.Symlink("/usr", filepath.Join(e.dir, "sysusr/usr"))
	for _, b := range [][2]string{{"/usr", "usr"}, {"/dev", "dev"}, {"/proc", "proc"}, {fixture, "sysroot"}} {
		dst := filepath.Join(e.dir, b[1])
		if err := unix.Mount(b[0], dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			t.Fatalf("bind %s: %v", b[0], err)
		}
		t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
	}
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "tmp/setup-root"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	e.script = "/tmp/setup-root"
	return e
}

// cmd returns the command running the script in the chroot.
func (e *bashEnv) cmd() *exec.Cmd {
	c := exec.Command("/bin/bash", e.script)
	c.SysProcAttr = &syscall.SysProcAttr{Chroot: e.dir}
	c.Dir = "/"
	c.Env = []string{"PATH=/usr/bin:/usr/sbin", "LANG=C"}
	return c
}

// run runs the script once and returns its output.
func (e *bashEnv) run(t testing.TB) string {
	t.Helper()
	var out bytes.Buffer
	c := e.cmd()
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		t.Fatalf("reference script: %v\n%s", err, out.String())
	}
	return out.String()
}

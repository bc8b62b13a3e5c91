package prepare

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// ReferenceDirEnv names the directory holding Flatcar's bootengine scripts
// (default: ../../shared/reference/flatcar-bootengine from this package).
const ReferenceDirEnv = "EXT_SETUP_ROOT_BOOTENGINE_DIR"

// referenceScript returns the path of Flatcar's initrd-setup-root or
// gates the test. As in abslots: the script is another project's code,
// never committed here; when its directory is named explicitly (or
// EXT_SETUP_ROOT_REQUIRE_ALL is set) its absence is a failure.
func referenceScript(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(ReferenceDirEnv)
	explicit := dir != ""
	if !explicit {
		dir = "../../shared/reference/flatcar-bootengine"
	}
	p, _ := filepath.Abs(filepath.Join(dir, "initrd-setup-root"))
	if _, err := os.Stat(p); err != nil {
		if !explicit && !testutil.RequireAll() {
			t.Skipf("Flatcar reference script not found at %s; set %s to run the differential test", p, ReferenceDirEnv)
		}
		testutil.Gate(t, "Flatcar reference script not found at %s (%s)", p, ReferenceDirEnv)
	}
	return p
}

// mountUsr makes root/usr a read-only overlay of vendor (the fixture's
// own /usr: share/flatcar/etc, the whiteout list) over the host's /usr, so
// that the script's `chroot /sysroot /usr/bin/find` runs; root needs the
// lib symlinks (libLinks) for the dynamic loader. Both trees of a
// differential test get the same, and /usr is a mount point as on Flatcar.
func mountUsr(t testing.TB, root, vendor string) {
	t.Helper()
	usr := filepath.Join(root, "usr")
	if err := os.MkdirAll(usr, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", usr, "overlay", unix.MS_RDONLY, "lowerdir="+vendor+":/usr"); err != nil {
		t.Fatalf("overlay on %s: %v", usr, err)
	}
	t.Cleanup(func() { unix.Unmount(usr, unix.MNT_DETACH) })
}

// libLinks are the root's usrmerge links, as on Flatcar.
var libLinks = []ent{{path: "bin", kind: 'l', data: "usr/bin"}, {path: "sbin", kind: 'l', data: "usr/sbin"},
	{path: "lib", kind: 'l', data: "usr/lib"}, {path: "lib64", kind: 'l', data: "usr/lib64"}}

// bashEnv is a chroot in which the script sees the fixture as /sysroot,
// the host's /usr as its own (and as /sysusr/usr for usrbin), with stubs
// for flatcar-tmpfiles and systemd-tmpfiles, which are not under test
// here (the tmpfiles duty has its own tests).
type bashEnv struct {
	dir    string
	script string
}

func newBashEnv(t testing.TB, fixture string) *bashEnv {
	t.Helper()
	script := referenceScript(t)
	testutil.RequireTool(t, "bash", "find", "stat", "getfacl", "attr", "cmp", "rmdir", "dirname", "mountpoint", "grep")
	e := &bashEnv{dir: testutil.Tmpfs(t)}
	for _, d := range []string{"usr", "dev", "proc", "tmp", "sysroot", "sysusr", "etc", "stubs/sbin", "stubs/bin"} {
		if err := os.MkdirAll(filepath.Join(e.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		os.Symlink("usr/"+l, filepath.Join(e.dir, l))
	}
	os.Symlink("/usr", filepath.Join(e.dir, "sysusr/usr"))
	stub := []byte("#!/bin/sh\nexit 0\n")
	for _, s := range []string{"stubs/sbin/flatcar-tmpfiles", "stubs/bin/systemd-tmpfiles"} {
		if err := os.WriteFile(filepath.Join(e.dir, s), stub, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("overlay", filepath.Join(e.dir, "usr"), "overlay", unix.MS_RDONLY, "lowerdir="+filepath.Join(e.dir, "stubs")+":/usr"); err != nil {
		t.Fatalf("usr overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(e.dir, "usr"), unix.MNT_DETACH) })
	for _, b := range [][2]string{{"/dev", "dev"}, {"/proc", "proc"}, {fixture, "sysroot"}} {
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

func (e *bashEnv) cmd() *exec.Cmd {
	c := exec.Command("/bin/bash", e.script)
	c.SysProcAttr = &syscall.SysProcAttr{Chroot: e.dir}
	c.Dir = "/"
	c.Env = []string{"PATH=/usr/bin:/usr/sbin", "LANG=C"}
	return c
}

// run runs the script once. It ends by mounting its own /etc overlay;
// that is undone here (the script unmounts it itself on a rerun too), and
// its work dir removed, so the fixture's /etc is the upper dir as it left
// it.
func (e *bashEnv) run(t testing.TB) string {
	t.Helper()
	var out bytes.Buffer
	c := e.cmd()
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	etc := filepath.Join(e.dir, "sysroot/etc")
	for unix.Unmount(etc, 0) == nil {
	}
	os.RemoveAll(filepath.Join(e.dir, "sysroot/.etc-work"))
	if err != nil {
		t.Fatalf("reference script: %v\n%s", err, out.String())
	}
	return out.String()
}

package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mountNSEnv marks the re-executed test binary. Its value is the mount
// namespace of the parent, so that the child can check that it really is in
// a different one (an inherited marker alone proves nothing).
const mountNSEnv = "EXT_SETUP_ROOT_TEST_MOUNTNS"

// mountNS returns the mount namespace identity of process pid ("self" or a
// number), for example "mnt:[4026531841]".
func mountNS(pid string) string {
	s, _ := os.Readlink("/proc/" + pid + "/ns/mnt")
	return s
}

// InPrivateMountNS reports whether this process runs in the private mount
// namespace created by MainInMountNS (or a descendant of it).
func InPrivateMountNS() bool {
	parent := os.Getenv(mountNSEnv)
	self := mountNS("self")
	return parent != "" && self != "" && self != parent
}

// MainInMountNS runs the tests of m. As root it first re-executes the test
// binary in a new mount namespace whose mounts are all private, so that the
// tmpfs and loop mounts of root tests never propagate to the host, and exits
// with the child's status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testutil.MainInMountNS(m) }
func MainInMountNS(m *testing.M) {
	if os.Geteuid() != 0 || InPrivateMountNS() {
		if InPrivateMountNS() {
			// Go's exec already made / rprivate after unshare; repeat it so
			// a namespace entered some other way is private too: mounts made
			// by tests must not propagate back to the host.
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				fmt.Fprintf(os.Stderr, "testutil: make / rprivate: %v\n", err)
				os.Exit(1)
			}
		}
		code := m.Run()
		cleanupBuild()
		os.Exit(code)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "testutil: %v\n", err)
		os.Exit(1)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), mountNSEnv+"="+mountNS("self"))
	// Unshareflags CLONE_NEWNS makes the Go runtime unshare in the child and
	// remount / with MS_REC|MS_PRIVATE before exec.
	// Pdeathsig: if go test kills this parent (timeout), the child must not
	// linger with mounts. It fires when the forking thread exits, hence
	// the locked thread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(os.Stderr, "testutil: test binary in mount namespace killed by %v\n", ws.Signal())
			os.Exit(1)
		}
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testutil: re-exec in private mount namespace: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

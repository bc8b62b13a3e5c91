// Package testutil holds the gates and fixtures of the three test tiers
// (unit, root in a private mount namespace, QEMU).
//
// A gate skips a test with a message naming what is missing, except when the
// environment variable EXT_SETUP_ROOT_REQUIRE_ALL=1 is set (as in CI): then
// it fails the test instead, so that nothing important is silently skipped.
package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireAllEnv is the environment variable that turns skips into failures.
const RequireAllEnv = "EXT_SETUP_ROOT_REQUIRE_ALL"

// RequireAll reports whether gates must fail instead of skipping, which CI
// requests with EXT_SETUP_ROOT_REQUIRE_ALL=1 so a missing prerequisite is
// never mistaken for a pass.
func RequireAll() bool {
	return os.Getenv(RequireAllEnv) == "1"
}

// Gate skips t with a message naming what is missing, or fails it under
// EXT_SETUP_ROOT_REQUIRE_ALL=1. Packages with their own prerequisites (for
// example a QEMU kernel) call it so they follow the same rule.
func Gate(t testing.TB, format string, args ...any) {
	t.Helper()
	if RequireAll() {
		t.Fatalf("missing prerequisite ("+RequireAllEnv+"=1): "+format, args...)
	}
	t.Skipf("skipped, missing prerequisite: "+format, args...)
}

// RequireRoot gates t on running as root inside the private mount namespace
// set up by MainInMountNS, so that root tests never mount on the host.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Gate(t, "root (euid is %d)", os.Geteuid())
		return
	}
	if !InPrivateMountNS() {
		// This is a bug in the test package, not a missing prerequisite:
		// fail even without RequireAll rather than mount on the host.
		t.Fatalf("root test outside a private mount namespace: TestMain must call testutil.MainInMountNS(m)")
	}
}

// RequireTool gates t on every named program being in $PATH.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		Gate(t, "tool(s) %s not in PATH (install via scripts/ci-deps.sh)", strings.Join(missing, ", "))
	}
}

// RequireEnvDir gates t on the environment variable envVar naming an
// existing directory, which holds what (for example "systemd 262 root").
// It returns the directory.
func RequireEnvDir(t testing.TB, envVar, what string) string {
	t.Helper()
	dir := os.Getenv(envVar)
	if dir == "" {
		Gate(t, "%s: set %s to its directory", what, envVar)
		return ""
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		Gate(t, "%s: %s=%s is not a directory", what, envVar, dir)
		return ""
	}
	return dir
}

// RequireFilesystem gates t on the running kernel supporting every named
// filesystem type (as listed in /proc/filesystems; modules are not loaded).
func RequireFilesystem(t testing.TB, fstypes ...string) {
	t.Helper()
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		Gate(t, "read /proc/filesystems: %v", err)
		return
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			have[f[len(f)-1]] = true
		}
	}
	var missing []string
	for _, fs := range fstypes {
		if !have[fs] {
			missing = append(missing, fs)
		}
	}
	if len(missing) > 0 {
		Gate(t, "kernel filesystem(s) %s not in /proc/filesystems", strings.Join(missing, ", "))
	}
}

// EmulatorEnv names the user-mode emulator (qemu-aarch64) that runs this
// test binary when it was built for another architecture (scripts/
// cross-test.sh sets it). Without binfmt_misc the kernel cannot start such
// a binary itself, so tests that re-run their own binary go through it.
const EmulatorEnv = "EXT_SETUP_ROOT_TEST_EMULATOR"

// SelfCommand returns a command running this test binary again with args,
// through the emulator of EmulatorEnv when one is set.
func SelfCommand(args ...string) *exec.Cmd {
	if emu := os.Getenv(EmulatorEnv); emu != "" {
		return exec.Command(emu, append([]string{os.Args[0]}, args...)...)
	}
	return exec.Command(os.Args[0], args...)
}

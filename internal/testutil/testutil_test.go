package testutil

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { MainInMountNS(m) }

// helperEnv selects which gate TestGateHelper exercises in a sub-process.
const helperEnv = "TESTUTIL_GATE_HELPER"

// TestGateHelper is run as a sub-process by TestGates; on its own it does
// nothing.
func TestGateHelper(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("sub-process helper of TestGates")
	case "tool":
		RequireTool(t, "ext-setup-root-no-such-tool")
	case "envdir":
		RequireEnvDir(t, "TESTUTIL_NO_SUCH_ENV", "a fixture")
	case "envdir-missing":
		RequireEnvDir(t, "TESTUTIL_DIR", "a fixture")
	}
	t.Log("HELPER REACHED END")
}

// TestGates runs gates in a sub-process with and without
// EXT_SETUP_ROOT_REQUIRE_ALL=1 and checks skip versus fail.
func TestGates(t *testing.T) {
	for _, gate := range []string{"tool", "envdir", "envdir-missing"} {
		for _, requireAll := range []bool{false, true} {
			cmd := SelfCommand("-test.run=^TestGateHelper$", "-test.v", "-test.count=1")
			env := []string{helperEnv + "=" + gate, "TESTUTIL_DIR=/nonexistent/dir"}
			if requireAll {
				env = append(env, RequireAllEnv+"=1")
			} else {
				env = append(env, RequireAllEnv+"=")
			}
			cmd.Env = append(os.Environ(), env...)
			out, err := cmd.CombinedOutput()
			s := string(out)
			if strings.Contains(s, "HELPER REACHED END") {
				t.Errorf("%s: gate did not stop the test:\n%s", gate, s)
			}
			if requireAll {
				if err == nil || !strings.Contains(s, "--- FAIL: TestGateHelper") {
					t.Errorf("%s with REQUIRE_ALL: want failure, got err=%v:\n%s", gate, err, s)
				}
			} else {
				if err != nil || !strings.Contains(s, "--- SKIP: TestGateHelper") {
					t.Errorf("%s without REQUIRE_ALL: want skip, got err=%v:\n%s", gate, err, s)
				}
			}
			if !strings.Contains(s, "missing prerequisite") {
				t.Errorf("%s: message does not say what is missing:\n%s", gate, s)
			}
		}
	}
}

func TestRequireEnvDirReturnsDir(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TESTUTIL_DIR", dir)
	if got := RequireEnvDir(t, "TESTUTIL_DIR", "a fixture"); got != dir {
		t.Fatalf("RequireEnvDir = %q, want %q", got, dir)
	}
}

// TestRequireToolPresent: a tool found in $PATH lets the test go on, a
// missing one stops it (skip without REQUIRE_ALL), each with only the
// named tools in $PATH so the host's tools do not decide the outcome.
func TestRequireToolPresent(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ext-setup-root-fake-tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	t.Setenv(RequireAllEnv, "")
	reached := false
	present := t.Run("present", func(t *testing.T) {
		RequireTool(t, "ext-setup-root-fake-tool")
		reached = true
	})
	if !present || !reached {
		t.Fatalf("RequireTool stopped the test although the tool is in $PATH (passed %v, reached end %v)", present, reached)
	}
	reached = false
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		RequireTool(t, "ext-setup-root-fake-tool", "ext-setup-root-no-such-tool")
		reached = true
	})
	if reached || !skipped {
		t.Fatalf("RequireTool with one tool missing: reached end %v, skipped %v", reached, skipped)
	}
}

// TestPrivateMountNS checks that root tests run in a mount namespace other
// than the one of the process that started them, with / not shared.
func TestPrivateMountNS(t *testing.T) {
	RequireRoot(t)
	self, parent := mountNS("self"), mountNS(strconv.Itoa(os.Getppid()))
	if self == "" || self == parent {
		t.Fatalf("mount namespace %q equals parent's %q", self, parent)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 6 && fields[4] == "/" {
			for _, opt := range fields[6:] {
				if opt == "-" {
					break
				}
				if strings.HasPrefix(opt, "shared:") {
					t.Errorf("/ is shared in the test namespace: %s", sc.Text())
				}
			}
		}
	}
}

func TestTmpfs(t *testing.T) {
	dir := Tmpfs(t)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("%s is not tmpfs (magic %#x)", dir, st.Type)
	}
}

func TestLoopFSFull(t *testing.T) {
	// Only ext4: the lab kernel has no vfat, and a vfat subtest would fail
	// CI under EXT_SETUP_ROOT_REQUIRE_ALL=1 for a filesystem nothing needs.
	dir := LoopFS(t, 2048, "ext4")
	FillFS(t, dir)
	err := os.WriteFile(filepath.Join(dir, "x"), make([]byte, 8192), 0o644)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("write to a full LoopFS: %v, want ENOSPC", err)
	}
}

func TestImages(t *testing.T) {
	RequireRoot(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	MakeSquashfs(t, src, filepath.Join(out, "a.squashfs"))
	MakeErofs(t, src, filepath.Join(out, "a.erofs"))
	for _, n := range []string{"a.squashfs", "a.erofs"} {
		if st, err := os.Stat(filepath.Join(out, n)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func TestBuildBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: go build takes a while")
	}
	t.Setenv(BinEnv, "")
	bin := BuildBinary(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	if again := BuildBinary(t); again != bin {
		t.Fatalf("second BuildBinary built again: %s vs %s", again, bin)
	}
}

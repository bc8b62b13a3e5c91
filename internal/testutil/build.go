package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  string
)

// BinEnv names a prebuilt ext-setup-root binary to use instead of building.
const BinEnv = "EXT_SETUP_ROOT_BIN"

// goTool finds the go command: $PATH first, then the toolchain that built
// this test binary.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// moduleRoot walks up from the working directory (the package under test)
// to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", os.ErrNotExist
		}
		dir = up
	}
}

// BuildBinary returns the path of a static ext-setup-root binary: the one
// named by EXT_SETUP_ROOT_BIN if set (make test sets it), otherwise one built
// with CGO_ENABLED=0 from ./cmd/ext-setup-root once per test process into a
// temporary directory removed when MainInMountNS returns.
func BuildBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", BinEnv, p, err)
		}
		return p
	}
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = "find go.mod: " + err.Error()
			return
		}
		buildDir, err = os.MkdirTemp("", "ext-setup-root-bin-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		bin := filepath.Join(buildDir, "ext-setup-root")
		cmd := exec.Command(goTool(), "build", "-trimpath", "-o", bin, "./cmd/ext-setup-root")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = "go build ./cmd/ext-setup-root: " + err.Error() + "\n" + string(out)
			return
		}
		buildBin = bin
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return buildBin
}

// cleanupBuild removes the binary built by BuildBinary.
func cleanupBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// built is one binary built once per test process.
type built struct {
	once sync.Once
	bin  string
	err  string
}

var (
	buildDir  string
	buildProd built
	buildHook built
)

// BinEnv names a prebuilt ext-setup-root binary to use instead of building.
const BinEnv = "EXT_SETUP_ROOT_BIN"

// TestHooksBinEnv names a prebuilt binary built with -tags testhooks, whose
// fault-injection variables (EXT_SETUP_ROOT_KILL_AT_STEP, ...) are armed.
const TestHooksBinEnv = "EXT_SETUP_ROOT_TESTHOOKS_BIN"

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

// BuildBinary returns the path of the production ext-setup-root binary
// (static, no test hooks): the one named by EXT_SETUP_ROOT_BIN if set (make
// test sets it to make build's), otherwise one built with CGO_ENABLED=0
// from ./cmd/ext-setup-root once per test process into a temporary
// directory removed when MainInMountNS returns.
func BuildBinary(t testing.TB) string {
	t.Helper()
	return buildWith(t, &buildProd, BinEnv, "ext-setup-root")
}

// BuildTestHooksBinary is BuildBinary for the binary built with -tags
// testhooks (EXT_SETUP_ROOT_TESTHOOKS_BIN; make test builds it as
// bin/ext-setup-root-testhooks), which crash and fault-injection tests
// drive through EXT_SETUP_ROOT_KILL_AT_STEP and friends.
func BuildTestHooksBinary(t testing.TB) string {
	t.Helper()
	return buildWith(t, &buildHook, TestHooksBinEnv, "ext-setup-root-testhooks", "-tags", "testhooks")
}

func buildWith(t testing.TB, b *built, env, name string, flags ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	b.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			b.err = "find go.mod: " + err.Error()
			return
		}
		buildMu.Lock()
		if buildDir == "" {
			buildDir, err = os.MkdirTemp("", "ext-setup-root-bin-")
		}
		dir := buildDir
		buildMu.Unlock()
		if err != nil {
			b.err = err.Error()
			return
		}
		bin := filepath.Join(dir, name)
		args := append([]string{"build", "-trimpath", "-buildvcs=false"}, flags...)
		cmd := exec.Command(goTool(), append(args, "-o", bin, "./cmd/ext-setup-root")...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = "go build " + strings.Join(flags, " ") + " ./cmd/ext-setup-root: " + err.Error() + "\n" + string(out)
			return
		}
		b.bin = bin
	})
	if b.err != "" {
		t.Fatal(b.err)
	}
	return b.bin
}

var buildMu sync.Mutex

// cleanupBuild removes the binary built by BuildBinary.
func cleanupBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

package rootfs

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// Environment variables read by FaultFromEnv.
const (
	// KillAtStepEnv makes the process SIGKILL itself at the Nth step.
	KillAtStepEnv = "EXT_SETUP_ROOT_KILL_AT_STEP"
	// StepLogEnv names a file to which every step name is appended.
	StepLogEnv = "EXT_SETUP_ROOT_STEP_LOG"
)

var (
	faultMu   sync.Mutex
	faultHook func(step string)
)

// fault is called by every mutating method before each side effect on disk
// (temp create, write, fsync, rename, unlink, mkdir, symlink), naming it.
// Crash tests use it to stop the process at every possible point.
func fault(step string) {
	faultMu.Lock()
	h := faultHook
	faultMu.Unlock()
	if h != nil {
		h(step)
	}
}

// SetFault installs hook to be called before each disk side effect of this
// package, with a short description of the step; nil removes it. It is
// process-wide and meant for tests.
func SetFault(hook func(step string)) {
	faultMu.Lock()
	faultHook = hook
	faultMu.Unlock()
}

// FaultFromEnv installs a hook driven by the environment, for crash tests
// that run the real binary: with EXT_SETUP_ROOT_STEP_LOG=FILE every step is
// appended to FILE as "N step" before it runs; with
// EXT_SETUP_ROOT_KILL_AT_STEP=N the process sends itself SIGKILL just before
// the Nth step (counting from 1), so that step's side effect never happens.
// Without either variable no hook is installed.
func FaultFromEnv(getenv func(string) string) error {
	logPath := getenv(StepLogEnv)
	killAt := 0
	if s := getenv(KillAtStepEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("%s=%q: want a step number >= 1", KillAtStepEnv, s)
		}
		killAt = n
	}
	if logPath == "" && killAt == 0 {
		return nil
	}
	var mu sync.Mutex
	n := 0
	SetFault(func(step string) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if logPath != "" {
			if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
				fmt.Fprintf(f, "%d %s\n", n, step)
				f.Close()
			}
		}
		if n == killAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns: the signal is on its way
		}
	})
	return nil
}

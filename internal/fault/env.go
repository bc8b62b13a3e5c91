package fault

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Environment variables read by FromEnv.
const (
	// KillAtStepEnv makes the process SIGKILL itself just before step N.
	KillAtStepEnv = "EXT_SETUP_ROOT_KILL_AT_STEP"
	// StepLogEnv names a file to which "N kind detail" is appended for
	// every step.
	StepLogEnv = "EXT_SETUP_ROOT_STEP_LOG"
	// FailAtStepEnv makes step N fail with FailErrnoEnv's errno (once).
	FailAtStepEnv = "EXT_SETUP_ROOT_FAIL_AT_STEP"
	// FailErrnoEnv names that errno: ENOSPC, EIO, EBUSY, EROFS or EINTR.
	FailErrnoEnv = "EXT_SETUP_ROOT_FAIL_ERRNO"
)

// errnoNames are the errors a test may inject.
var errnoNames = map[string]syscall.Errno{
	"ENOSPC": unix.ENOSPC, "EIO": unix.EIO, "EBUSY": unix.EBUSY,
	"EROFS": unix.EROFS, "EINTR": unix.EINTR, "EPERM": unix.EPERM,
}

// Errnos returns the errors a real system can return at a step of kind k,
// the ones a fault test injects there; Op steps get none (kill only).
// EINTR is listed where the call sits in an EINTR retry loop.
func Errnos(k Kind) []string {
	switch k {
	case Mkdir, Create, Write, Symlink:
		return []string{"ENOSPC", "EROFS"}
	case Chmod:
		return []string{"EROFS"}
	case Fsync:
		return []string{"EIO"}
	case Rename, Remove:
		return []string{"EROFS", "EIO"}
	case Mount:
		return []string{"EBUSY", "EINTR"}
	case Unmount:
		return []string{"EBUSY", "EINTR"}
	case Loop:
		return []string{"EBUSY", "EINTR"}
	}
	return nil
}

// FromEnv returns the hook the environment asks for, or nil when none of
// the variables is set. Only test builds and tests call it.
func FromEnv(getenv func(string) string) (Hook, error) {
	logPath := getenv(StepLogEnv)
	num := func(env string) (int, error) {
		s := getenv(env)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%s=%q: want a step number >= 1", env, s)
		}
		return n, nil
	}
	killAt, err := num(KillAtStepEnv)
	if err != nil {
		return nil, err
	}
	failAt, err := num(FailAtStepEnv)
	if err != nil {
		return nil, err
	}
	var failErr error
	if failAt > 0 {
		e, ok := errnoNames[getenv(FailErrnoEnv)]
		if !ok {
			return nil, fmt.Errorf("%s=%q: want one of ENOSPC, EIO, EBUSY, EROFS, EINTR, EPERM", FailErrnoEnv, getenv(FailErrnoEnv))
		}
		failErr = e
	}
	if logPath == "" && killAt == 0 && failAt == 0 {
		return nil, nil
	}
	var mu sync.Mutex
	n := 0
	var last Kind
	return func(kind Kind, detail string) error {
		mu.Lock()
		defer mu.Unlock()
		// A loop set-up retried right away (another process took the free
		// device first, EBUSY) is the same step: counting it would make
		// the numbering depend on other processes.
		if kind == Loop && last == Loop {
			return nil
		}
		last = kind
		n++
		if logPath != "" {
			if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
				fmt.Fprintf(f, "%d %s %s\n", n, kind, strconv.Quote(detail))
				f.Close()
			}
		}
		if n == killAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns: the signal is on its way
		}
		if n == failAt {
			return failErr
		}
		return nil
	}, nil
}

// ArmFromEnv installs FromEnv's hook, if any.
func ArmFromEnv(getenv func(string) string) error {
	h, err := FromEnv(getenv)
	if err != nil || h == nil {
		return err
	}
	Set(h)
	return nil
}

package rootfs

import (
	"strings"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
)

// Environment variables of the test builds' fault hook (see package
// internal/fault), kept here for the crash tests that name them.
const (
	KillAtStepEnv = fault.KillAtStepEnv
	StepLogEnv    = fault.StepLogEnv
)

// step is called by every mutating method before each side effect on disk
// (temp create, write, fsync, rename, unlink, mkdir, symlink), naming it; a
// non-nil result is an error injected by a test, which the caller returns
// as that side effect's error. Crash tests use it to stop the process at
// every possible point.
func step(detail string) error {
	return fault.Point(stepKind(detail), detail)
}

// stepKind classifies a step by its first words.
func stepKind(detail string) fault.Kind {
	switch {
	case strings.HasPrefix(detail, "fsync"):
		return fault.Fsync
	case strings.HasPrefix(detail, "mkdir"), strings.HasPrefix(detail, "copy dir"):
		return fault.Mkdir
	case strings.HasPrefix(detail, "write"):
		return fault.Write
	case strings.HasPrefix(detail, "create"):
		return fault.Create
	case strings.HasPrefix(detail, "chmod"):
		return fault.Chmod
	case strings.HasPrefix(detail, "rename"):
		return fault.Rename
	case strings.HasPrefix(detail, "remove"):
		return fault.Remove
	case strings.HasPrefix(detail, "symlink"), strings.HasPrefix(detail, "copy symlink"):
		return fault.Symlink
	}
	return fault.Write
}

// SetFault installs hook to be called before each disk side effect of this
// package, with a short description of the step; nil removes it. It is
// process-wide and meant for in-process tests (it replaces any hook of
// package internal/fault).
func SetFault(hook func(step string)) {
	if hook == nil {
		fault.Set(nil)
		return
	}
	fault.Set(func(_ fault.Kind, detail string) error { hook(detail); return nil })
}

// FaultFromEnv installs the environment-driven hook of internal/fault
// (EXT_SETUP_ROOT_STEP_LOG, EXT_SETUP_ROOT_KILL_AT_STEP, ...). Only tests
// call it; the binary arms it only when built with the testhooks tag.
func FaultFromEnv(getenv func(string) string) error { return fault.ArmFromEnv(getenv) }

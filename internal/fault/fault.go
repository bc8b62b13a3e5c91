// Package fault is the one fault-injection seam of ext-setup-root: every
// side effect (an operation logged by oplog, a disk change by rootfs or the
// engine, a mount, unmount or loop set-up) first calls Point, which counts
// it as a numbered step. Tests install a Hook that logs the steps, kills
// the process just before step N or makes step N fail with an errno.
//
// Nothing here reads the environment or is armed by default: without a
// hook, Point returns nil. The environment-driven hook (FromEnv) is
// installed only by a binary built with the testhooks build tag (make
// test builds one; the production binary of make build ignores the
// variables), or explicitly by a test.
package fault

import "sync/atomic"

// Kind classifies a step by the system call it precedes, which decides
// the errors a test injects there (see Errnos).
type Kind string

// Step kinds.
const (
	Op      Kind = "op"      // an oplog operation starts (kill only: no error can be returned)
	Mkdir   Kind = "mkdir"   // mkdirat
	Create  Kind = "create"  // openat O_CREAT of a new file
	Write   Kind = "write"   // writing data
	Chmod   Kind = "chmod"   // fchmod / fchown
	Fsync   Kind = "fsync"   // fsync of a file or directory
	Rename  Kind = "rename"  // renameat
	Remove  Kind = "remove"  // unlinkat
	Symlink Kind = "symlink" // symlinkat
	Mount   Kind = "mount"   // fsopen/fsconfig/fsmount/move_mount/mount_setattr/mount/open_tree clone
	Unmount Kind = "unmount" // umount2
	Loop    Kind = "loop"    // loop device set-up
)

// Hook is called before each step; a non-nil error is returned by Point
// in place of the step's system call.
type Hook func(kind Kind, detail string) error

var (
	hook    atomic.Pointer[Hook]
	without atomic.Int32
)

// Without runs f with the fault points off: for probes that only touch
// throwaway objects (the kernel feature probe's detached tmpfs and
// invalid fds), whose steps are no side effects and whose injected errors
// would only turn features off.
func Without(f func()) {
	without.Add(1)
	defer without.Add(-1)
	f()
}

// Set installs h process-wide (nil removes it).
func Set(h Hook) {
	if h == nil {
		hook.Store(nil)
		return
	}
	hook.Store(&h)
}

// Point marks the side effect about to happen; it returns nil unless a
// test's hook injects an error. Callers treat that error exactly like the
// error of the system call that follows (they skip the call).
func Point(kind Kind, detail string) error {
	if h := hook.Load(); h != nil && without.Load() == 0 {
		return (*h)(kind, detail)
	}
	return nil
}

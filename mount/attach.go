package mount

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrBeneathUnsupported is wrapped (together with unix.EINVAL) into the
// error of Attach(..., beneath=true) when the running kernel does not know
// MOVE_MOUNT_BENEATH (before Linux 6.5), so callers can fall back to
// mount-on-top plus lazy unmount instead of failing the boot:
// errors.Is(err, ErrBeneathUnsupported).
var ErrBeneathUnsupported = errors.New("kernel lacks MOVE_MOUNT_BENEATH")

var (
	beneathOnce sync.Once
	beneathOK   bool
)

// BeneathSupported reports whether the kernel accepts MOVE_MOUNT_BENEATH.
// It probes move_mount with the flag and invalid fds: a kernel that knows
// the flag gets as far as the fds (EBADF), an older one rejects the unknown
// flag first (EINVAL). Needs CAP_SYS_ADMIN (EPERM otherwise, reported as
// unsupported). The answer is cached.
func BeneathSupported() bool {
	beneathOnce.Do(func() {
		err := MoveMount(-1, "", -1, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH|MoveMountBeneath)
		beneathOK = errors.Is(err, unix.EBADF)
	})
	return beneathOK
}

// Attach attaches the detached mount mnt (from FSContext.Mount,
// MountOverlay or BindDetached) at target, an O_PATH (or any) fd of the
// mount point resolved inside the target root. With beneath, the mount goes
// under the mount currently on top at target (which must then be the root
// of that top mount), so unmounting the top one afterwards swaps the two
// without a moment where target shows the underlying directory.
//
// After Attach, mnt refers to the attached mount and, while open, keeps it
// busy (umount without MNT_DETACH fails with EBUSY): close it when done.
func Attach(mnt *os.File, target *os.File, beneath bool) error {
	if mnt == nil || target == nil {
		return &Error{Op: "move_mount", Err: unix.EBADF}
	}
	flags := unix.MOVE_MOUNT_F_EMPTY_PATH | unix.MOVE_MOUNT_T_EMPTY_PATH
	if beneath {
		flags |= MoveMountBeneath
	}
	err := MoveMount(int(mnt.Fd()), "", int(target.Fd()), "", flags)
	runtime.KeepAlive(mnt)
	runtime.KeepAlive(target)
	if err == nil {
		return nil
	}
	var me *Error
	if errors.As(err, &me) {
		me.Source, me.Target = mnt.Name(), target.Name()
		if beneath && errors.Is(me.Err, unix.EINVAL) && !BeneathSupported() {
			me.Err = fmt.Errorf("%w: %w", ErrBeneathUnsupported, me.Err)
		}
	}
	return err
}

// BindDetached returns a detached bind mount of the directory dir
// (open_tree with OPEN_TREE_CLONE), with its submounts if recursive. Attach
// it elsewhere or change its attributes first with SetAttr.
func BindDetached(dir *os.File, recursive bool) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := OpenTree(int(dir.Fd()), "", flags)
	runtime.KeepAlive(dir)
	if err != nil {
		var me *Error
		if errors.As(err, &me) {
			me.Source = dir.Name()
		}
		return nil, err
	}
	return os.NewFile(uintptr(fd), "bind of "+dir.Name()), nil
}

// SetAttr sets and clears MOUNT_ATTR_* flags and, if propagation is not 0,
// sets the propagation type (unix.MS_PRIVATE, MS_SLAVE, MS_SHARED,
// MS_UNBINDABLE) of the mount referred to by mnt, a mount fd or an O_PATH fd
// of a mount root; with recursive, of all mounts below it too.
func SetAttr(mnt *os.File, set, clr uint64, propagation uint64, recursive bool) error {
	flags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	err := MountSetattr(int(mnt.Fd()), "", flags, &unix.MountAttr{Attr_set: set, Attr_clr: clr, Propagation: propagation})
	runtime.KeepAlive(mnt)
	var me *Error
	if errors.As(err, &me) {
		me.Target = mnt.Name()
	}
	return err
}

// UnmountFd unmounts the mount whose root f refers to, through the magic
// link /proc/self/fd/N, so that no path is looked up again. flags are
// umount2 flags (MNT_DETACH to let busy users keep the old tree, as needed
// after a beneath swap). A detached mount is not unmounted but discarded by
// closing its fd.
func UnmountFd(f *os.File, flags int) error {
	err := Unmount(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), flags)
	runtime.KeepAlive(f)
	var me *Error
	if errors.As(err, &me) {
		me.Target = f.Name()
	}
	return err
}

// propagate changes the propagation type of the mount at path.
func propagate(path string, kind uintptr, recursive bool) error {
	if recursive {
		kind |= unix.MS_REC
	}
	return Mount("", path, "", kind, "")
}

// MakePrivate makes the mount at path (and below, if recursive) private:
// mounts made under it neither propagate to peers nor receive theirs. Do it
// on /sysroot before mounting under it: systemd makes / shared, and mounts
// propagated into other namespaces (udevd's) would not follow later
// unmounts and would keep devices busy.
func MakePrivate(path string, recursive bool) error {
	return propagate(path, unix.MS_PRIVATE, recursive)
}

// MakeShared makes the mount at path (and below, if recursive) shared, so
// that mounts under it propagate to its peers. Use it to restore what
// systemd expects (a shared /) after private setup work, so that later
// mounts by the booted system reach service namespaces.
func MakeShared(path string, recursive bool) error {
	return propagate(path, unix.MS_SHARED, recursive)
}

// MakeSlave makes the mount at path (and below, if recursive) a slave:
// it still receives mounts from its former peers but its own mounts do not
// propagate back. Use it where host mounts must stay visible but changes
// made here must not leak out (as runc does for a container's /).
func MakeSlave(path string, recursive bool) error {
	return propagate(path, unix.MS_SLAVE, recursive)
}

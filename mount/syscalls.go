package mount

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// MoveMountBeneath is MOVE_MOUNT_BENEATH (Linux 6.5): move_mount places the
// mount beneath the top mount at the target instead of on top of it, which
// lets a mount be replaced without a moment where the path is uncovered.
// golang.org/x/sys v0.49.0 does not define it.
const MoveMountBeneath = 0x200

// fdPath names dirfd+path in errors: the path as given, "fd N" for an empty
// path, or "fd N/path" for a relative path below a directory fd.
func fdPath(dirfd int, path string) string {
	switch {
	case path == "":
		return fmt.Sprintf("fd %d", dirfd)
	case dirfd == unix.AT_FDCWD || path[0] == '/':
		return path
	default:
		return fmt.Sprintf("fd %d/%s", dirfd, path)
	}
}

// Fsopen opens a filesystem context for fstype (fsopen(2)).
func Fsopen(fstype string, flags int) (int, error) {
	fd, err := sysx.RetryValue(func() (int, error) { return unix.Fsopen(fstype, flags) })
	if err != nil {
		return -1, &Error{Op: "fsopen", FSType: fstype, Flags: uint64(flags), Err: err}
	}
	return fd, nil
}

// FsconfigString sets a string parameter key=val on the filesystem context fd
// (FSCONFIG_SET_STRING).
func FsconfigString(fd int, key, val string) error {
	err := sysx.Retry(func() error { return unix.FsconfigSetString(fd, key, val) })
	if err != nil {
		return &Error{Op: "fsconfig", Target: fdPath(fd, ""), Data: key + "=" + val, Err: err}
	}
	return nil
}

// FsconfigFlag sets a flag parameter key on the filesystem context fd
// (FSCONFIG_SET_FLAG).
func FsconfigFlag(fd int, key string) error {
	err := sysx.Retry(func() error { return unix.FsconfigSetFlag(fd, key) })
	if err != nil {
		return &Error{Op: "fsconfig", Target: fdPath(fd, ""), Data: key, Err: err}
	}
	return nil
}

// FsconfigFd sets parameter key to the open file descriptor val
// (FSCONFIG_SET_FD).
func FsconfigFd(fd int, key string, val int) error {
	err := sysx.Retry(func() error { return unix.FsconfigSetFd(fd, key, val) })
	if err != nil {
		return &Error{Op: "fsconfig", Target: fdPath(fd, ""), Data: fmt.Sprintf("%s=<fd %d>", key, val), Err: err}
	}
	return nil
}

// FsconfigCreate creates the superblock of the filesystem context fd
// (FSCONFIG_CMD_CREATE).
func FsconfigCreate(fd int) error {
	err := sysx.Retry(func() error {
		if err := fault.Point(fault.Mount, "fsconfig create "+fdPath(fd, "")); err != nil {
			return err
		}
		return unix.FsconfigCreate(fd)
	})
	if err != nil {
		return &Error{Op: "fsconfig create", Target: fdPath(fd, ""), Err: err}
	}
	return nil
}

// Fsmount turns the created filesystem context fd into a detached mount and
// returns its fd (fsmount(2)); attrs are MOUNT_ATTR_* flags.
func Fsmount(fd, flags, attrs int) (int, error) {
	mfd, err := sysx.RetryValue(func() (int, error) {
		if err := fault.Point(fault.Mount, "fsmount "+fdPath(fd, "")); err != nil {
			return -1, err
		}
		return unix.Fsmount(fd, flags, attrs)
	})
	if err != nil {
		return -1, &Error{Op: "fsmount", Target: fdPath(fd, ""), Flags: uint64(attrs), Err: err}
	}
	return mfd, nil
}

// MoveMount attaches or moves a mount (move_mount(2)); flags are
// MOVE_MOUNT_* including MoveMountBeneath.
func MoveMount(fromDirfd int, fromPath string, toDirfd int, toPath string, flags int) error {
	err := sysx.Retry(func() error {
		if err := fault.Point(fault.Mount, "move_mount "+fdPath(fromDirfd, fromPath)+" -> "+fdPath(toDirfd, toPath)); err != nil {
			return err
		}
		return unix.MoveMount(fromDirfd, fromPath, toDirfd, toPath, flags)
	})
	if err != nil {
		return &Error{Op: "move_mount", Source: fdPath(fromDirfd, fromPath), Target: fdPath(toDirfd, toPath), Flags: uint64(flags), Err: err}
	}
	return nil
}

// OpenTree opens (or with OPEN_TREE_CLONE, clones as a detached bind mount)
// the mount at dirfd+path (open_tree(2)).
func OpenTree(dirfd int, path string, flags uint) (int, error) {
	fd, err := sysx.RetryValue(func() (int, error) {
		if flags&unix.OPEN_TREE_CLONE != 0 {
			if err := fault.Point(fault.Mount, "open_tree clone "+fdPath(dirfd, path)); err != nil {
				return -1, err
			}
		}
		return unix.OpenTree(dirfd, path, flags)
	})
	if err != nil {
		return -1, &Error{Op: "open_tree", Source: fdPath(dirfd, path), Flags: uint64(flags), Err: err}
	}
	return fd, nil
}

// MountSetattr changes mount attributes and propagation of the mount at
// dirfd+path (mount_setattr(2)).
func MountSetattr(dirfd int, path string, flags uint, attr *unix.MountAttr) error {
	err := sysx.Retry(func() error {
		if err := fault.Point(fault.Mount, "mount_setattr "+fdPath(dirfd, path)); err != nil {
			return err
		}
		return unix.MountSetattr(dirfd, path, flags, attr)
	})
	if err != nil {
		return &Error{Op: "mount_setattr", Target: fdPath(dirfd, path), Flags: uint64(flags),
			Data: fmt.Sprintf("set=%#x clr=%#x propagation=%#x", attr.Attr_set, attr.Attr_clr, attr.Propagation), Err: err}
	}
	return nil
}

// Unmount unmounts target (umount2(2)); flags are MNT_* / UMOUNT_*.
func Unmount(target string, flags int) error {
	err := sysx.Retry(func() error {
		if err := fault.Point(fault.Unmount, "umount2 "+target); err != nil {
			return err
		}
		return unix.Unmount(target, flags)
	})
	if err != nil {
		return &Error{Op: "umount2", Target: target, Flags: uint64(flags), Err: err}
	}
	return nil
}

// Mount is classic mount(2), kept for propagation changes and remounts,
// which the new API expresses less directly on paths.
func Mount(source, target, fstype string, flags uintptr, data string) error {
	err := sysx.Retry(func() error {
		if err := fault.Point(fault.Mount, "mount "+source+" "+target); err != nil {
			return err
		}
		return unix.Mount(source, target, fstype, flags, data)
	})
	if err != nil {
		return &Error{Op: "mount", Source: source, Target: target, FSType: fstype, Flags: uint64(flags), Data: data, Err: err}
	}
	return nil
}

// statx is statx(2) into sx.
func statx(dirfd int, path string, flags, mask int, sx *unix.Statx_t) error {
	return sysx.Retry(func() error { return unix.Statx(dirfd, path, flags, mask, sx) })
}

// nameToHandleAtRaw issues one name_to_handle_at(2) into buf (whose first
// 8 bytes are the file_handle header). mnt receives the mount ID, which the
// kernel writes as a u64 with AtHandleMntIDUnique and as an int otherwise,
// so it must always be 8 bytes wide (x/sys's wrapper passes 4 bytes and
// would be overrun).
func nameToHandleAtRaw(dirfd int, path string, buf []uint32, mnt *uint64, flags int) error {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return err
	}
	return sysx.Retry(func() error {
		_, _, e := unix.Syscall6(unix.SYS_NAME_TO_HANDLE_AT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(mnt)), uintptr(flags), 0)
		runtime.KeepAlive(p)
		if e != 0 {
			return e
		}
		return nil
	})
}

// loopGetFree asks /dev/loop-control (ctl) for a free loop device number
// (LOOP_CTL_GET_FREE).
func loopGetFree(ctl int) (int, error) {
	var n int
	err := sysx.Retry(func() (err error) {
		n, err = unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		return err
	})
	return n, err
}

// loopConfigure binds the loop device fd to its backing file and sets its
// parameters in one step (LOOP_CONFIGURE).
func loopConfigure(fd int, cfg *unix.LoopConfig) error {
	return sysx.Retry(func() error {
		if err := fault.Point(fault.Loop, "LOOP_CONFIGURE"); err != nil {
			return err
		}
		return unix.IoctlLoopConfigure(fd, cfg)
	})
}

// loopClearFd detaches the backing file of the loop device fd
// (LOOP_CLR_FD).
func loopClearFd(fd int) error {
	return sysx.Retry(func() error { return unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0) })
}

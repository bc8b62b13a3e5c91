package boot

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// This file holds every syscall the boot package makes itself (the engines
// make their own). Each retries on EINTR, which Go's asynchronous
// preemption can cause, and returns an *os.PathError naming the call and
// path so that errors.Is(err, unix.ENOENT) works.

func retry(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// openRoot opens root as the anchor for all later lookups.
func openRoot(root string) (int, error) {
	var fd int
	err := retry(func() (e error) {
		fd, e = unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return e
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: root, Err: err}
	}
	return fd, nil
}

// openInRoot opens name (relative, "/" separated) inside the root anchored
// at rootfd: absolute symlinks and ".." resolve against the root, never the
// initrd, and magic links are refused. noFollow adds O_NOFOLLOW so the last
// element is not followed.
func openInRoot(rootfd int, name string, flags int, noFollow bool) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if noFollow {
		how.Flags |= unix.O_NOFOLLOW
	}
	var fd int
	err := retry(func() (e error) {
		fd, e = unix.Openat2(rootfd, name, &how)
		return e
	})
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: name, Err: err}
	}
	return fd, nil
}

func mkdirat(dirfd int, name, path string, mode uint32) error {
	if err := retry(func() error { return unix.Mkdirat(dirfd, name, mode) }); err != nil {
		return &os.PathError{Op: "mkdirat", Path: path, Err: err}
	}
	return nil
}

func symlinkat(target string, dirfd int, name, path string) error {
	if err := retry(func() error { return unix.Symlinkat(target, dirfd, name) }); err != nil {
		return &os.PathError{Op: "symlinkat", Path: path, Err: err}
	}
	return nil
}

func readlinkat(dirfd int, name, path string) (string, error) {
	buf := make([]byte, unix.PathMax)
	var n int
	err := retry(func() (e error) {
		n, e = unix.Readlinkat(dirfd, name, buf)
		return e
	})
	if err != nil {
		return "", &os.PathError{Op: "readlinkat", Path: path, Err: err}
	}
	return string(buf[:n]), nil
}

func fstatat(dirfd int, name, path string, flags int) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := retry(func() error { return unix.Fstatat(dirfd, name, &st, flags) })
	if err != nil {
		return st, &os.PathError{Op: "fstatat", Path: path, Err: err}
	}
	return st, nil
}

// fsyncDir makes a directory entry change durable. The fd may be O_PATH,
// so the directory is reopened for reading first.
func fsyncDir(dirfd int, path string) error {
	var fd int
	err := retry(func() (e error) {
		fd, e = unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return e
	})
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if err := retry(func() error { return unix.Fsync(fd) }); err != nil {
		return &os.PathError{Op: "fsync", Path: path, Err: err}
	}
	return nil
}

package rootfs

import (
	"errors"

	"golang.org/x/sys/unix"
)

// This file holds the raw system call wrappers of package rootfs: each
// retries on EINTR (Go's asynchronous preemption can interrupt slow calls,
// golang/go#40846) and returns the bare errno, which callers wrap in an
// *os.PathError naming the path inside the root.

// retry calls f until it returns something other than EINTR.
func retry(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// openat2 opens name below dirfd with how, retrying EINTR and, a bounded
// number of times, EAGAIN, which RESOLVE_IN_ROOT returns when a concurrent
// rename could have let ".." escape (openat2(2)).
func openat2(dirfd int, name string, how *unix.OpenHow) (int, error) {
	for eagain := 0; ; {
		fd, err := unix.Openat2(dirfd, name, how)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN) && eagain < 32:
			eagain++
			continue
		}
		return fd, err
	}
}

func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

func mkdirat(dirfd int, name string, mode uint32) error {
	return retry(func() error { return unix.Mkdirat(dirfd, name, mode) })
}

func unlinkat(dirfd int, name string, flags int) error {
	return retry(func() error { return unix.Unlinkat(dirfd, name, flags) })
}

func renameat(olddirfd int, oldname string, newdirfd int, newname string) error {
	return retry(func() error { return unix.Renameat(olddirfd, oldname, newdirfd, newname) })
}

func symlinkat(target string, dirfd int, name string) error {
	return retry(func() error { return unix.Symlinkat(target, dirfd, name) })
}

func fsync(fd int) error {
	return retry(func() error { return unix.Fsync(fd) })
}

func fstatat(dirfd int, name string, st *unix.Stat_t, flags int) error {
	return retry(func() error { return unix.Fstatat(dirfd, name, st, flags) })
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		var n int
		err := retry(func() (err error) { n, err = unix.Readlinkat(dirfd, name, buf); return })
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// mountID returns the mount id of the object at dirfd+name (AT_EMPTY_PATH
// when name is empty), never following a final symlink.
func mountID(dirfd int, name string) (uint64, error) {
	var stx unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	err := retry(func() error { return unix.Statx(dirfd, name, flags, unix.STATX_MNT_ID, &stx) })
	return stx.Mnt_id, err
}

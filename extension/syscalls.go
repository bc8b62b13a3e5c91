package extension

import (
	"errors"

	"golang.org/x/sys/unix"
)

// This file holds the *at system calls the engine makes directly (most
// lookups go through rootfs). Each retries on EINTR, which Go's
// asynchronous preemption can cause on slow file systems (golang/go#40846),
// and returns the bare errno; callers wrap it in an *os.PathError naming
// the path.

// retry calls f until it returns something other than EINTR.
func retry(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// openat is openat(2) with O_CLOEXEC added.
func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode)
		return err
	})
	return fd, err
}

func fstatat(dirfd int, name string, st *unix.Stat_t, flags int) error {
	return retry(func() error { return unix.Fstatat(dirfd, name, st, flags) })
}

func fstat(fd int, st *unix.Stat_t) error {
	return retry(func() error { return unix.Fstat(fd, st) })
}

func fchmod(fd int, mode uint32) error {
	return retry(func() error { return unix.Fchmod(fd, mode) })
}

// mountIDOf returns the mount id of the object fd refers to (statx
// STATX_MNT_ID with AT_EMPTY_PATH).
func mountIDOf(fd int) (uint64, error) {
	var stx unix.Statx_t
	err := retry(func() error { return unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx) })
	return stx.Mnt_id, err
}

func mkdirat(dirfd int, name string, mode uint32) error {
	return retry(func() error { return unix.Mkdirat(dirfd, name, mode) })
}

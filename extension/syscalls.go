package extension

import (
	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// This file holds the *at system calls the engine makes directly (most
// lookups go through rootfs). Each retries on EINTR (sysx.Retry)
// and returns the bare errno; callers wrap it in an *os.PathError naming
// the path.

// openat is openat(2) with O_CLOEXEC added.
func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	var fd int
	err := sysx.Retry(func() (err error) {
		fd, err = unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode)
		return err
	})
	return fd, err
}

func fstat(fd int, st *unix.Stat_t) error {
	return sysx.Retry(func() error { return unix.Fstat(fd, st) })
}

func fchmod(fd int, mode uint32) error {
	return sysx.Retry(func() error {
		if err := fault.Point(fault.Chmod, "fchmod"); err != nil {
			return err
		}
		return unix.Fchmod(fd, mode)
	})
}

func mkdirat(dirfd int, name string, mode uint32) error {
	return sysx.Retry(func() error {
		if err := fault.Point(fault.Mkdir, "mkdir "+name); err != nil {
			return err
		}
		return unix.Mkdirat(dirfd, name, mode)
	})
}

// fstatfs is fstatfs(2); an O_PATH descriptor is enough.
func fstatfs(fd int, st *unix.Statfs_t) error {
	return sysx.Retry(func() error { return unix.Fstatfs(fd, st) })
}

package record

import (
	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// This file holds the *at system calls the identity and fingerprint walks
// make directly (most lookups go through rootfs). Each retries on EINTR
// (sysx.Retry) and returns the bare errno; callers wrap it in an
// *os.PathError naming the path.

// openat is openat(2) with O_CLOEXEC added.
func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	var fd int
	err := sysx.Retry(func() (err error) {
		fd, err = unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode)
		return err
	})
	return fd, err
}

func fstatat(dirfd int, name string, st *unix.Stat_t, flags int) error {
	return sysx.Retry(func() error { return unix.Fstatat(dirfd, name, st, flags) })
}

func fstat(fd int, st *unix.Stat_t) error {
	return sysx.Retry(func() error { return unix.Fstat(fd, st) })
}

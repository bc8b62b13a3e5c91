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

func mkdirat(dirfd int, name string, mode uint32) error {
	return retry(func() error { return unix.Mkdirat(dirfd, name, mode) })
}

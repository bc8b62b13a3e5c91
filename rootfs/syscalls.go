package rootfs

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// This file holds the raw system call wrappers of package rootfs: each
// retries on EINTR (sysx.Retry) and returns the bare errno, which callers wrap in an
// *os.PathError naming the path inside the root.

// openat2 opens name below dirfd with how, retrying EINTR and, a bounded
// number of times, EAGAIN, which RESOLVE_IN_ROOT returns when a concurrent
// rename could have let ".." escape (openat2(2)).
func openat2(dirfd int, name string, how *unix.OpenHow) (int, error) {
	for eagain := 0; ; {
		fd, err := sysx.RetryValue(func() (int, error) { return unix.Openat2(dirfd, name, how) })
		switch {
		case errors.Is(err, unix.EAGAIN) && eagain < 32:
			eagain++
			continue
		}
		return fd, err
	}
}

func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	return sysx.RetryValue(func() (int, error) { return unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode) })
}

func mkdirat(dirfd int, name string, mode uint32) error {
	return sysx.Retry(func() error { return unix.Mkdirat(dirfd, name, mode) })
}

func unlinkat(dirfd int, name string, flags int) error {
	return sysx.Retry(func() error { return unix.Unlinkat(dirfd, name, flags) })
}

func renameat(olddirfd int, oldname string, newdirfd int, newname string) error {
	return sysx.Retry(func() error { return unix.Renameat(olddirfd, oldname, newdirfd, newname) })
}

func symlinkat(target string, dirfd int, name string) error {
	return sysx.Retry(func() error { return unix.Symlinkat(target, dirfd, name) })
}

func fsync(fd int) error {
	return sysx.Retry(func() error { return unix.Fsync(fd) })
}

func fstatat(dirfd int, name string, st *unix.Stat_t, flags int) error {
	return sysx.Retry(func() error { return unix.Fstatat(dirfd, name, st, flags) })
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		var n int
		err := sysx.Retry(func() (err error) { n, err = unix.Readlinkat(dirfd, name, buf); return })
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func lseek(fd int, off int64, whence int) (int64, error) {
	return sysx.RetryValue(func() (int64, error) { return unix.Seek(fd, off, whence) })
}

func pread(fd int, p []byte, off int64) (int, error) {
	return sysx.RetryValue(func() (int, error) { return unix.Pread(fd, p, off) })
}

func pwrite(fd int, p []byte, off int64) (int, error) {
	return sysx.RetryValue(func() (int, error) { return unix.Pwrite(fd, p, off) })
}

func ftruncate(fd int, size int64) error {
	return sysx.Retry(func() error { return unix.Ftruncate(fd, size) })
}

// copyFileRange copies up to n bytes from sfd at *soff to dfd at *doff
// (both advanced by the kernel).
func copyFileRange(sfd int, soff *int64, dfd int, doff *int64, n int) (int, error) {
	return sysx.RetryValue(func() (int, error) { return unix.CopyFileRange(sfd, soff, dfd, doff, n, 0) })
}

func flistxattr(fd int, buf []byte) (int, error) {
	return sysx.RetryValue(func() (int, error) { return unix.Flistxattr(fd, buf) })
}

func fgetxattr(fd int, name string, buf []byte) (int, error) {
	return sysx.RetryValue(func() (int, error) { return unix.Fgetxattr(fd, name, buf) })
}

func fsetxattr(fd int, name string, value []byte) error {
	return sysx.Retry(func() error { return unix.Fsetxattr(fd, name, value, 0) })
}

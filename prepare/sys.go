package prepare

import (
	"bytes"
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// The system calls this package makes, each retried on EINTR and wrapped
// in an *os.PathError naming the operation and the path (errors.Is with
// unix errnos works through it).

// retry is the module's one EINTR retry (internal/sysx).
var retry = sysx.Retry

func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: name, Err: err}
}

func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	var fd int
	err := retry(func() (e error) { fd, e = unix.Openat(dirfd, name, flags|unix.O_CLOEXEC, mode); return })
	return fd, err
}

// openIn resolves name below dirfd as if dirfd were the root: "..", and
// absolute symlinks, never leave it; with nofollow the last element is
// not followed.
func openIn(dirfd int, name string, flags int, nofollow bool) (int, error) {
	if name == "" || name == "/" {
		name = "."
	}
	if nofollow {
		flags |= unix.O_NOFOLLOW
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	var fd int
	err := retry(func() (e error) { fd, e = unix.Openat2(dirfd, name, &how); return })
	return fd, err
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	return retry(func() error { return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW) })
}

func fstat(fd int, st *unix.Stat_t) error {
	return retry(func() error { return unix.Fstat(fd, st) })
}

func unlinkat(dirfd int, name string, flags int) error {
	return retry(func() error { return unix.Unlinkat(dirfd, name, flags) })
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		var n int
		err := retry(func() (e error) { n, e = unix.Readlinkat(dirfd, name, buf); return })
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= 1<<16 {
			return "", unix.ENAMETOOLONG
		}
		buf = make([]byte, 2*len(buf))
	}
}

// fgetxattr returns the value of attr of fd, nil without error when it
// is not set (or the file system has no xattrs at all). Values are
// bounded at 64 KiB, the kernel's XATTR_SIZE_MAX.
func fgetxattr(fd int, attr string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		var n int
		err := retry(func() (e error) { n, e = unix.Fgetxattr(fd, attr, buf); return })
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 1<<16:
			buf = make([]byte, 1<<16)
			continue
		case err != nil:
			return nil, err
		}
		return buf[:n], nil
	}
}

// flistxattr returns the names of fd's extended attributes (none when
// the file system has no xattrs). The list is bounded at 64 KiB, the
// kernel's XATTR_LIST_MAX.
func flistxattr(fd int) ([]string, error) {
	buf := make([]byte, 1024)
	for {
		var n int
		err := retry(func() (e error) { n, e = unix.Flistxattr(fd, buf); return })
		switch {
		case errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 1<<16:
			buf = make([]byte, 1<<16)
			continue
		case err != nil:
			return nil, err
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

func syncfs(fd int) error {
	return retry(func() error { return unix.Syncfs(fd) })
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// fdName names fd for messages.
func fdName(fd int) string {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "fd " + strconv.Itoa(fd)
	}
	return p
}

// readNames lists the entries of the directory fd (without . and ..).
// The fd is duplicated, so the caller keeps its own.
func readNames(fd int) ([]string, error) {
	dup, err := retry2(func() (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	if _, err := unix.Seek(dup, 0, 0); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

func retry2(f func() (int, error)) (int, error) {
	var n int
	err := retry(func() (e error) { n, e = f(); return })
	return n, err
}

// procFdName names the entry name of the directory fd through /proc, for
// the calls that have no fd-relative form (l*xattr on a symlink); name is
// one path element, so nothing but the fd's directory is resolved.
func procFdName(dir int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dir) + "/" + name
}

// llistxattr is flistxattr for a path whose last element is not followed.
func llistxattr(p string) ([]string, error) {
	buf := make([]byte, 1<<16)
	var n int
	err := retry(func() (e error) { n, e = unix.Llistxattr(p, buf); return })
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var names []string
	for _, b := range bytes.Split(buf[:n], []byte{0}) {
		if len(b) > 0 {
			names = append(names, string(b))
		}
	}
	return names, nil
}

// lgetxattr is fgetxattr for a path whose last element is not followed.
func lgetxattr(p, attr string) ([]byte, error) {
	buf := make([]byte, 1<<16)
	var n int
	err := retry(func() (e error) { n, e = unix.Lgetxattr(p, attr, buf); return })
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return buf[:n], nil
}

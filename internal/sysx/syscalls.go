// Package sysx holds the few system call helpers that every package of the
// module needs in exactly the same form: the EINTR retry loop, the statx
// mount-id lookup and the initrd test. It imports nothing of the module, so
// paths, mount, rootfs and extension can all use it; each of those keeps its
// own syscall wrappers in its own syscalls.go, built on these.
package sysx

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Retry calls f until it returns something other than EINTR. Since Go 1.14
// the runtime's asynchronous preemption signals can interrupt slow system
// calls (FUSE, network file systems, loop set-up, fsync), golang/go#40846;
// x/sys/unix returns EINTR to the caller instead of restarting.
func Retry(f func() error) error {
	for {
		if err := f(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// RetryValue is Retry for calls that return a value (an fd, a count).
func RetryValue[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if !errors.Is(err, unix.EINTR) {
			return v, err
		}
	}
}

// MountID returns the (legacy, reusable) mount id of the object at
// dirfd+name, as /proc/self/mountinfo lists it in its first column; an empty
// name means dirfd itself (AT_EMPTY_PATH). A final symlink is never
// followed. It returns the bare errno; callers name the path. Package mount
// has StatxMountID for the unique 64-bit id where a never-reused id is
// needed.
func MountID(dirfd int, name string) (uint64, error) {
	var stx unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	err := Retry(func() error { return unix.Statx(dirfd, name, flags, unix.STATX_MNT_ID, &stx) })
	if err == nil && stx.Mask&unix.STATX_MNT_ID == 0 {
		// Linux < 5.8 ignores the request and leaves Mnt_id 0.
		err = unix.ENOSYS
	}
	return stx.Mnt_id, err
}

// InitrdRelease is the file whose existence marks an initrd
// (os-release(5)); systemd's in_initrd() tests exactly this.
const InitrdRelease = "etc/initrd-release"

// IsInitrd reports whether the tree whose top directory is rootfd is an
// initrd: whether etc/initrd-release exists in it, resolved inside that
// tree (RESOLVE_IN_ROOT, so a symlink cannot point the test elsewhere). A
// missing file or a non-directory on the way means "no"; any other error is
// returned.
func IsInitrd(rootfd int) (bool, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for eagain := 0; ; {
		fd, err := RetryValue(func() (int, error) { return unix.Openat2(rootfd, InitrdRelease, &how) })
		switch {
		case err == nil:
			unix.Close(fd)
			return true, nil
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
			return false, nil
		case errors.Is(err, unix.EAGAIN) && eagain < 32:
			// RESOLVE_IN_ROOT refuses a lookup racing a rename (openat2(2)).
			eagain++
			continue
		}
		return false, err
	}
}

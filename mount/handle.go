package mount

import (
	"encoding/binary"
	"errors"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel constants for name_to_handle_at(2) that golang.org/x/sys v0.49
// does not define (values from include/uapi/linux/fcntl.h).
const (
	// AtHandleFID (Linux 6.5) asks for a handle that only identifies the
	// inode and need not be usable with open_by_handle_at, so file systems
	// without export support (overlayfs, some FUSE) still answer.
	AtHandleFID = 0x200
	// AtHandleMntIDUnique (Linux 6.12) makes the kernel store the 64-bit
	// unique mount ID, not the reusable int one, into the mount ID pointer.
	AtHandleMntIDUnique = 0x001
)

// originalMaxHandleSize is the starting handle buffer size systemd uses
// (MAX_HANDLE_SZ as first defined); the loop grows it when needed.
const originalMaxHandleSize = 128

// fileHandleHeader is sizeof(struct file_handle) without f_handle.
const fileHandleHeader = 8

// errUnatch mirrors systemd's -EUNATCH: statx succeeded but did not return
// the requested field (the kernel is too old for it).
var errUnatch = unix.EUNATCH

func statxWithMask(dirfd int, path string, flags, mask int) (*unix.Statx_t, error) {
	var sx unix.Statx_t
	err := statx(dirfd, path, flags, mask, &sx)
	if err != nil {
		return nil, err
	}
	if int(sx.Mask)&mask != mask {
		return &sx, errUnatch
	}
	return &sx, nil
}

// nameToHandleLoop is systemd's name_to_handle_at_loop() with both the
// unique and the legacy mount ID requested: AtHandleMntIDUnique first; on
// EINVAL a plain call plus statx(STATX_MNT_ID_UNIQUE); if the kernel lacks
// that too, the legacy int mount ID. EOVERFLOW grows the buffer as long as
// the kernel asks for more.
func nameToHandleLoop(dirfd int, path string, flags int) (int32, []byte, uint64, bool, error) {
	if path == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	for n := originalMaxHandleSize; ; {
		buf := make([]uint32, (fileHandleHeader+n+3)/4)
		buf[0] = uint32(n)
		var mnt uint64
		handle := func() (int32, []byte) {
			b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*4)
			size := binary.NativeEndian.Uint32(b[0:4])
			typ := int32(binary.NativeEndian.Uint32(b[4:8]))
			return typ, append([]byte(nil), b[fileHandleHeader:fileHandleHeader+int(size)]...)
		}

		err := nameToHandleAtRaw(dirfd, path, buf, &mnt, flags|AtHandleMntIDUnique)
		if err == nil {
			t, h := handle()
			return t, h, mnt, true, nil
		}
		if err != unix.EOVERFLOW {
			if err != unix.EINVAL {
				return 0, nil, 0, false, err
			}
			buf[0] = uint32(n)
			mnt = 0
			err = nameToHandleAtRaw(dirfd, path, buf, &mnt, flags)
			if err == nil {
				t, h := handle()
				statFlags := unix.AT_STATX_DONT_SYNC | flags&unix.AT_EMPTY_PATH
				if flags&unix.AT_SYMLINK_FOLLOW == 0 {
					statFlags |= unix.AT_SYMLINK_NOFOLLOW
				}
				sx, serr := statxWithMask(dirfd, path, statFlags, unix.STATX_MNT_ID_UNIQUE)
				if serr == nil {
					return t, h, sx.Mnt_id, true, nil
				}
				if serr != errUnatch {
					return 0, nil, 0, false, serr
				}
				// The int the kernel wrote sits in the low bytes of mnt.
				legacy := *(*int32)(unsafe.Pointer(&mnt))
				return t, h, uint64(uint32(legacy)), false, nil
			}
			if err != unix.EOVERFLOW {
				return 0, nil, 0, false, err
			}
		}
		// EOVERFLOW: grow only if the kernel asked for a larger buffer;
		// otherwise it is an unrelated EOVERFLOW (untriggered autofs).
		if int(buf[0]) <= n {
			return 0, nil, 0, false, unix.EOVERFLOW
		}
		n = int(buf[0])
		if n > 1<<20 {
			return 0, nil, 0, false, unix.EOVERFLOW
		}
	}
}

// NameToHandleAt returns the file handle and mount ID of dirfd/path like
// systemd's name_to_handle_at_try_fid(): AtHandleFID first and, if that
// fails non-fatally (see IsNameToHandleAtFatal), again without it; each
// attempt prefers the unique 64-bit mount ID (uniqueMntID=true) and falls
// back to the legacy one. An empty path means dirfd itself (AT_EMPTY_PATH).
// Errors are *os.PathError unwrapping to the errno.
func NameToHandleAt(dirfd int, path string, flags int) (handleType int32, handle []byte, mntID uint64, uniqueMntID bool, err error) {
	handleType, handle, mntID, uniqueMntID, err = nameToHandleLoop(dirfd, path, flags|AtHandleFID)
	if err != nil && !IsNameToHandleAtFatal(err) {
		handleType, handle, mntID, uniqueMntID, err = nameToHandleLoop(dirfd, path, flags&^AtHandleFID)
	}
	if err != nil {
		return 0, nil, 0, false, &os.PathError{Op: "name_to_handle_at", Path: handleFdName(dirfd, path), Err: err}
	}
	return handleType, handle, mntID, uniqueMntID, nil
}

// IsNameToHandleAtFatal reports whether a name_to_handle_at error is a real
// failure rather than "this file system or context cannot do it" (not
// supported, not permitted, EOVERFLOW, EINVAL), as systemd's
// is_name_to_handle_at_fatal_error(): only fatal errors abort discovery.
func IsNameToHandleAtFatal(err error) bool {
	for _, e := range []unix.Errno{unix.EOPNOTSUPP, unix.ENOTTY, unix.ENOSYS, unix.EAFNOSUPPORT, unix.EPFNOSUPPORT,
		unix.EPROTONOSUPPORT, unix.ESOCKTNOSUPPORT, unix.ENOPROTOOPT, unix.EPERM, unix.EACCES, unix.EOVERFLOW, unix.EINVAL} {
		if errors.Is(err, e) {
			return false
		}
	}
	return true
}

// StatxMountID returns the mount ID of fd itself: the unique 64-bit ID
// (STATX_MNT_ID_UNIQUE, Linux 6.8) when the kernel provides it, else the
// legacy one, as systemd's path_get_unique_mnt_id_at() with fallback to
// path_get_mnt_id_at(). It is used when no file handle can be had.
func StatxMountID(fd int) (id uint64, unique bool, err error) {
	const flags = unix.AT_EMPTY_PATH | unix.AT_SYMLINK_NOFOLLOW | unix.AT_NO_AUTOMOUNT | unix.AT_STATX_DONT_SYNC
	sx, err := statxWithMask(fd, "", flags, unix.STATX_MNT_ID_UNIQUE)
	if err == nil {
		return sx.Mnt_id, true, nil
	}
	if err != errUnatch && !errors.Is(err, unix.EINVAL) {
		return 0, false, &os.PathError{Op: "statx", Path: handleFdName(fd, ""), Err: err}
	}
	sx, err = statxWithMask(fd, "", flags, unix.STATX_MNT_ID)
	if err != nil {
		return 0, false, &os.PathError{Op: "statx", Path: handleFdName(fd, ""), Err: err}
	}
	return sx.Mnt_id, false, nil
}

// Btime returns the birth time of fd itself; ok is false when the file
// system does not report one (or reports 0 seconds, which systemd treats as
// unknown).
func Btime(fd int) (ts unix.StatxTimestamp, ok bool, err error) {
	sx, err := statxWithMask(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_BTIME)
	if err == errUnatch {
		return unix.StatxTimestamp{}, false, nil
	}
	if err != nil {
		return unix.StatxTimestamp{}, false, &os.PathError{Op: "statx", Path: handleFdName(fd, ""), Err: err}
	}
	if sx.Btime.Sec == 0 {
		return unix.StatxTimestamp{}, false, nil
	}
	return sx.Btime, true, nil
}

// handleFdName names dirfd/path for errors using the fd's current path.
func handleFdName(dirfd int, path string) string {
	if dirfd == unix.AT_FDCWD {
		return path
	}
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(dirfd))
	if err != nil {
		p = "fd " + strconv.Itoa(dirfd)
	}
	if path != "" {
		p += "/" + path
	}
	return p
}

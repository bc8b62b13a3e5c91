package rootfs

import (
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// This file is the one way a file is read from a root or an image (a
// sidecar, a release file, a meta or origin file, a configuration file).
// Every such file is hostile input: a FIFO planted as NAME.roothash would
// block a read (while the hierarchy lock is held), a character device such
// as /dev/zero would be read until memory runs out, and a device's open
// alone can have effects (a watchdog starts counting). So the name is
// opened O_PATH first, fstat must report a regular file, and only then is
// that same inode reopened for reading (through its /proc/self/fd link,
// never by name again, so nothing can be swapped in between), O_NONBLOCK,
// and at most the caller's bound is read.

// Links says whether a final symlink of the name is followed.
type Links bool

const (
	// NoFollow refuses a final symlink (O_NOFOLLOW): for sidecars and
	// files only we write.
	NoFollow Links = false
	// FollowInRoot follows a final symlink, resolved inside the root like
	// every other element (/etc/os-release -> ../usr/lib/os-release).
	FollowInRoot Links = true
)

// FileRuleError is a file that breaks a rule of the bounded reader (not a
// regular file, larger than the bound). It names the file and the rule.
type FileRuleError struct {
	Path string
	Rule string
	// Type is the file's type (unix.S_IFMT bits) when the rule broken is
	// "a regular file", else 0.
	Type uint32
}

func (e *FileRuleError) Error() string { return e.Path + ": " + e.Rule }

// OpenRegular opens name below dir (resolved as if dir were "/", see
// OpenIn) for reading, after checking that it is a regular file. The
// returned file is O_RDONLY|O_NONBLOCK; a missing name is an
// *os.PathError matching fs.ErrNotExist.
func OpenRegular(dir *os.File, name string, links Links) (*os.File, error) {
	display := path.Join(dir.Name(), "/"+name)
	flags := unix.O_PATH
	if links == NoFollow {
		flags |= unix.O_NOFOLLOW
	}
	pfd, err := openBelow(int(dir.Fd()), name, flags, 0)
	runtime.KeepAlive(dir)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: display, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := sysx.Retry(func() error { return unix.Fstat(pfd, &st) }); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: display, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &FileRuleError{Path: display, Rule: "is " + fileKind(&st) + ", not a regular file", Type: st.Mode & unix.S_IFMT}
	}
	fd, err := openat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: display, Err: err}
	}
	return os.NewFile(uintptr(fd), display), nil
}

// ReadRegular reads the regular file name below dir whole, refusing one of
// more than max bytes with an error naming the file and the bound.
func ReadRegular(dir *os.File, name string, max int64, links Links) ([]byte, error) {
	f, err := OpenRegular(dir, name, links)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadBounded(f, max)
}

// ReadRegular is the package function ReadRegular below the root.
func (r *Root) ReadRegular(name string, max int64, links Links) ([]byte, error) {
	return ReadRegular(r.f, name, max, links)
}

// OpenRegular is the package function OpenRegular below the root.
func (r *Root) OpenRegular(name string, links Links) (*os.File, error) {
	return OpenRegular(r.f, name, links)
}

// ReadBounded reads f (opened by OpenRegular, or any file a caller has
// already checked) up to max bytes; one byte more is an error naming f and
// the bound, so a caller never takes a truncated file for a whole one.
func ReadBounded(f *os.File, max int64) ([]byte, error) {
	return ReadAtMost(f, f.Name(), max)
}

// ReadAtMost is ReadBounded for any reader; name is for messages. A read
// error is an error even after some data: partial data is never returned.
func ReadAtMost(r io.Reader, name string, max int64) ([]byte, error) {
	if max < 0 {
		max = 0
	}
	// Grow as the data arrives, never by the size fstat claims: the
	// file may change while it is read.
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: name, Err: err}
	}
	if int64(len(b)) > max {
		return nil, &FileRuleError{Path: name, Rule: fmt.Sprintf("larger than the %d bytes allowed", max)}
	}
	return b, nil
}

// CheckRegular fstats f and refuses anything but a regular file, for a
// file the caller had to open itself.
func CheckRegular(f *os.File) error {
	var st unix.Stat_t
	if err := sysx.Retry(func() error { return unix.Fstat(int(f.Fd()), &st) }); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	runtime.KeepAlive(f)
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &FileRuleError{Path: f.Name(), Rule: "is " + fileKind(&st) + ", not a regular file", Type: st.Mode & unix.S_IFMT}
	}
	return nil
}

// fileKind names a file type for messages.
func fileKind(st *unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return fmt.Sprintf("a character device %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		return fmt.Sprintf("a block device %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return fmt.Sprintf("of type %#o", st.Mode&unix.S_IFMT)
}

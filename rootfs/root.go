// Package rootfs resolves, reads and changes files INSIDE a target root
// (such as /sysroot) by file descriptor.
//
// Every lookup is an openat2(2) with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS
// relative to the root's fd: ".." never climbs above the root and absolute
// symlinks (/etc/resolv.conf -> /run/...) resolve against the root, as they
// will after switch-root, so names read from disk (untrusted) cannot reach
// outside it. Mutations act on the last element with *at calls relative to
// an fd of its parent and never follow a final symlink.
//
// Every change is crash-safe: data goes to a recognisable temp name in the
// same directory (.NAME.ext-setup-root-tmp), is fsynced, renamed over the
// final name and the directory fsynced, so after a crash at any point the
// name holds either the old or the new content, plus at most a temp that
// CleanTemps removes. Each side effect is preceded by a fault point
// (SetFault, FaultFromEnv) so tests can crash at every step.
package rootfs

import (
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is an open target root directory.
type Root struct {
	f    *os.File
	path string // as given to Open, for messages
	real string // resolved absolute path of the root, for Resolve
}

// Open opens the directory path as a root.
func Open(p string) (*Root, error) {
	fd, err := openat(unix.AT_FDCWD, p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open root", Path: p, Err: err}
	}
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Root{f: os.NewFile(uintptr(fd), p), path: p, real: real}, nil
}

// Close closes the root's fd.
func (r *Root) Close() error { return r.f.Close() }

// Path returns the path the root was opened with.
func (r *Root) Path() string { return r.path }

// Fd returns the root's directory fd (valid until Close).
func (r *Root) Fd() int { return int(r.f.Fd()) }

// display names an in-root name in error messages as a host path.
func (r *Root) display(name string) string {
	return path.Join(r.path, "/"+name)
}

// errPath wraps errno in an *os.PathError naming name inside the root.
func (r *Root) errPath(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: r.display(name), Err: err}
}

// checkName rejects names the kernel would misread: a NUL would truncate
// the name at the system call boundary.
func checkName(name string) error {
	if strings.IndexByte(name, 0) >= 0 {
		return unix.EINVAL
	}
	return nil
}

// relName turns an absolute-in-root or relative name into one for openat2
// below the root fd ("." for the root itself).
func relName(name string) string {
	n := strings.TrimLeft(name, "/")
	if n == "" {
		return "."
	}
	return n
}

// openBelow opens name below dirfd as if dirfd were the root: openat2
// with RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS, adding O_CLOEXEC; mode is
// used only with O_CREAT or O_TMPFILE.
func openBelow(dirfd int, name string, flags int, mode uint32) (int, error) {
	if err := checkName(name); err != nil {
		return -1, err
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode)
	}
	return openat2(dirfd, relName(name), &how)
}

// openIn opens name inside the root (see openBelow).
func (r *Root) openIn(name string, flags int, mode uint32) (int, error) {
	return openBelow(r.Fd(), name, flags, mode)
}

// OpenIn is Root.Open for a directory that has no path to Open by: a
// detached mount (fsmount, open_tree), an image's tree or a directory fd
// already inside a root. name resolves below dir as if dir were "/" (".."
// and absolute symlinks stay below it, no magic links); the last element
// is followed unless flags has O_NOFOLLOW.
func OpenIn(dir *os.File, name string, flags int) (*os.File, error) {
	display := path.Join(dir.Name(), "/"+name)
	fd, err := openBelow(int(dir.Fd()), name, flags, 0)
	runtime.KeepAlive(dir)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: display, Err: err}
	}
	return os.NewFile(uintptr(fd), display), nil
}

// Open opens name (absolute in the root or relative to it) with flags
// (O_RDONLY, O_PATH, O_DIRECTORY, O_NOFOLLOW, O_CREAT...) and mode.
// Symlinks, including absolute ones and "..", resolve inside the root; the
// last element is followed unless flags has O_NOFOLLOW.
func (r *Root) Open(name string, flags int, mode uint32) (*os.File, error) {
	fd, err := r.openIn(name, flags, mode)
	if err != nil {
		return nil, r.errPath("open", name, err)
	}
	return os.NewFile(uintptr(fd), r.display(name)), nil
}

// OpenPath opens name as O_PATH|O_NOFOLLOW: a handle on the object itself
// (a symlink stays a symlink), suitable as a mount target or for fstat.
func (r *Root) OpenPath(name string) (*os.File, error) {
	return r.Open(name, unix.O_PATH|unix.O_NOFOLLOW, 0)
}

// OpenDir opens the directory name as O_PATH|O_DIRECTORY|O_NOFOLLOW: the
// handle to mount onto (mount.Attach). Intermediate symlinks resolve inside
// the root, but name itself must be a real directory, never a symlink
// (ENOTDIR), so a link planted at a mount point cannot redirect the mount
// (Ignition#737, runc CVE-2021-30465).
func (r *Root) OpenDir(name string) (*os.File, error) {
	return r.Open(name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
}

// splitName splits name into its in-root parent directory and last
// element, refusing names whose last element is not a plain name (".",
// "..", the root itself).
func splitName(name string) (dir, base string, err error) {
	if err := checkName(name); err != nil {
		return "", "", err
	}
	n := strings.TrimRight(name, "/")
	i := strings.LastIndexByte(n, '/')
	dir, base = n[:i+1], n[i+1:]
	if base == "" || base == "." || base == ".." {
		return "", "", unix.EINVAL
	}
	if dir == "" {
		dir = "."
	}
	return dir, base, nil
}

// openParent opens the parent directory of name (following symlinks inside
// the root) for *at calls and fsync, and returns it with the last element.
func (r *Root) openParent(name string) (*os.File, string, error) {
	dir, base, err := splitName(name)
	if err != nil {
		return nil, "", r.errPath("open parent", name, err)
	}
	fd, err := r.openIn(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, "", r.errPath("open parent", name, err)
	}
	return os.NewFile(uintptr(fd), r.display(dir)), base, nil
}

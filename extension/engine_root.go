package extension

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// This file resolves and changes paths INSIDE the target root by file
// descriptor (openat2 RESOLVE_IN_ROOT, no magic links), so that symlinks in
// the root (absolute ones included) are followed as if the root were "/"
// and nothing outside it is ever touched because of content inside it.
// Lookups go through rootfs.OpenIn, which works on any directory fd,
// including detached mounts that rootfs.Open cannot reach by path.

// openDirIn opens the directory p inside root as O_PATH.
func openDirIn(root *os.File, p string) (*os.File, error) {
	return rootfs.OpenIn(root, p, unix.O_PATH|unix.O_DIRECTORY)
}

// fdPath returns the path the kernel reports for f (readlink of the
// magic link), i.e. the fully resolved location, as systemd's chase()
// returns it.
func fdPath(f *os.File) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
}

// statFd fstats f (works on O_PATH fds).
func statFd(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := fstat(int(f.Fd()), &st)
	if err != nil {
		return st, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return st, nil
}

// mkdirAll creates p inside the root with any missing parents, 0755 like
// systemd's CHASE_MKDIR_0755 (rootfs fsyncs each directory it changes),
// and returns an O_PATH fd of the final directory, symlinks followed
// inside the root.
func (e *engine) mkdirAll(p string) (*os.File, error) {
	if err := e.rfs.MkdirAll(p, 0o755); err != nil {
		return nil, err
	}
	return openDirIn(e.root, p)
}

// reopen turns an O_PATH fd into a real one with flags (for fchmod,
// getdents or reading), through the magic link.
func reopen(f *os.File, flags int) (*os.File, error) {
	name := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	fd, err := sysx.RetryValue(func() (int, error) { return unix.Open(name, flags|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: f.Name(), Err: err}
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// dirIsEmpty reports whether the directory f has no entries besides . and
// .., as systemd's dir_is_empty (hidden files count).
func dirIsEmpty(f *os.File) (bool, error) {
	d, err := reopen(f, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return false, err
	}
	defer d.Close()
	names, err := d.Readdirnames(3)
	if err != nil && len(names) == 0 {
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		return false, &os.PathError{Op: "readdir", Path: f.Name(), Err: err}
	}
	return len(names) == 0, nil
}

// readFileIn reads a small file inside root.
func readFileIn(root *os.File, p string) ([]byte, error) {
	f, err := rootfs.OpenIn(root, p, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil || n == 0 {
			break
		}
		if len(b) > 16<<20 {
			return nil, &os.PathError{Op: "read", Path: f.Name(), Err: errors.New("file too large")}
		}
	}
	return b, nil
}

// stripRoot turns a kernel-reported absolute path into an in-root path.
func stripRoot(root *os.File, abs string) string {
	rp, err := fdPath(root)
	if err != nil || rp == "/" {
		return abs
	}
	if abs == rp {
		return "/"
	}
	if strings.HasPrefix(abs, rp+"/") {
		return abs[len(rp):]
	}
	return abs
}

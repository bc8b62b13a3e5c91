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

// maxSmallFile bounds readFileIn: the meta files it reads (dev, work_dir,
// origin, the image list) are a few KiB at most.
const maxSmallFile = 16 << 20

// readFileIn reads a small file inside root. A read error or a file larger
// than maxSmallFile is an error: callers never see a truncated file as if
// it were whole.
func readFileIn(root *os.File, p string) ([]byte, error) {
	return rootfs.ReadRegular(root, p, maxSmallFile, rootfs.NoFollow)
}

// stripRoot turns abs, a path the kernel reported for an fd below root
// (fdPath), into the same path inside root. A path that is not below root
// (the object was moved out of it, or lives on a mount not reachable from
// root's path) is an error, never returned as is: a host path must not be
// used as an in-root path.
func stripRoot(root *os.File, abs string) (string, error) {
	rp, err := fdPath(root)
	if err != nil {
		return "", err
	}
	switch {
	case rp == "/":
		return abs, nil
	case abs == rp:
		return "/", nil
	case strings.HasPrefix(abs, rp+"/"):
		return abs[len(rp):], nil
	}
	return "", fmt.Errorf("%s is not below the root %s", abs, rp)
}

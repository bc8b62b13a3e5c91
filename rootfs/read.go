package rootfs

import (
	"errors"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// fstatName opens name with flags and fstats it.
func (r *Root) fstatName(op, name string, flags int) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := r.openIn(name, flags, 0)
	if err != nil {
		return st, r.errPath(op, name, err)
	}
	defer unix.Close(fd)
	if err := sysx.Retry(func() error { return unix.Fstat(fd, &st) }); err != nil {
		return st, r.errPath(op, name, err)
	}
	return st, nil
}

// Lstat returns the status of name itself (a final symlink is not
// followed).
func (r *Root) Lstat(name string) (unix.Stat_t, error) {
	return r.fstatName("lstat", name, unix.O_PATH|unix.O_NOFOLLOW)
}

// Stat returns the status of what name resolves to inside the root.
func (r *Root) Stat(name string) (unix.Stat_t, error) {
	return r.fstatName("stat", name, unix.O_PATH)
}

// Readlink returns the target of the symlink name, as stored.
func (r *Root) Readlink(name string) (string, error) {
	fd, err := r.openIn(name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", r.errPath("readlink", name, err)
	}
	defer unix.Close(fd)
	s, err := readlinkat(fd, "")
	return s, r.errPath("readlink", name, err)
}

// Exists reports whether name exists (as Lstat sees it: a dangling symlink
// exists). Errors other than "does not exist" are returned.
func (r *Root) Exists(name string) (bool, error) {
	_, err := r.Lstat(name)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.ENOENT):
		return false, nil
	default:
		return false, err
	}
}

// Resolve returns the absolute in-root path that name refers to, with
// every symlink (including the last element) followed inside the root; it
// is what a process chrooted into the root would reach. It fails if the
// object does not exist.
func (r *Root) Resolve(name string) (string, error) {
	fd, err := r.openIn(name, unix.O_PATH, 0)
	if err != nil {
		return "", r.errPath("resolve", name, err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", r.errPath("resolve", name, err)
	}
	return r.inRoot(p, name)
}

// inRoot strips the root's own host path from the host path p.
func (r *Root) inRoot(p, name string) (string, error) {
	if r.real == "/" {
		return p, nil
	}
	if p == r.real {
		return "/", nil
	}
	if rest, ok := strings.CutPrefix(p, r.real+"/"); ok {
		return "/" + rest, nil
	}
	// The object is reachable only through a mount moved since Open, or
	// the name was deleted (" (deleted)"): no honest in-root answer.
	return "", r.errPath("resolve", name, errors.New("resolved to "+p+", outside the root "+r.real))
}

// MaxConfigFile is the bound of ReadFile: configuration and release files
// without a tighter rule of their own (release.MaxFileSize is the same).
const MaxConfigFile = 4 << 20

// ReadFile reads the regular file name (a final link followed inside the
// root) with the bounded reader (ReadRegular): at most MaxConfigFile
// bytes; a FIFO, device or directory is an error naming the file.
func (r *Root) ReadFile(name string) ([]byte, error) {
	return r.ReadRegular(name, MaxConfigFile, FollowInRoot)
}

// ReadDir lists the directory name (followed inside the root), sorted by
// name.
func (r *Root) ReadDir(name string) ([]os.DirEntry, error) {
	f, err := r.Open(name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	return ents, err
}

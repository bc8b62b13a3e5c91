package boot

import (
	"errors"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// LinkState says what EnsureMutableLink found or did.
type LinkState int

// LinkState values.
const (
	// LinkCreated: the symlink was created now.
	LinkCreated LinkState = iota
	// LinkPresent: the symlink to /etc was already there (rerun).
	LinkPresent
	// LinkWouldCreate: dry run, the symlink is missing and would be created.
	LinkWouldCreate
	// LinkForeign: something else is there (a user's directory or another
	// link) and was left alone; the engine's mutable mode uses it as is.
	LinkForeign
)

func (s LinkState) String() string {
	return [...]string{"created", "present", "would create", "kept existing entry"}[s]
}

// MutableLinkDir and MutableLinkName locate the link that puts confexts in
// mutable mode with /etc itself as the upper dir (systemd's mutable dir for
// the /etc hierarchy; systemd-sysext(8), "Mutable").
const (
	MutableLinkDir    = "var/lib/extensions.mutable"
	MutableLinkName   = "etc"
	MutableLinkTarget = "/etc"
)

// SysextUnitPath is where a mask of systemd-sysext.service lives in the root.
const SysextUnitPath = "etc/systemd/system/systemd-sysext.service"

// RootDir implements RootOps by file descriptor: every path is resolved
// inside the root with openat2(RESOLVE_IN_ROOT), so symlinks in the root
// (absolute ones included) never lead into the initrd.
type RootDir struct{}

// EnsureMutableLink creates var/lib/extensions.mutable (0755, like
// systemd's "yes" mode) and the symlink etc -> /etc in it, but only where
// nothing exists yet: a user's real directory or another link is kept.
// symlinkat is atomic (the entry exists complete or not at all) and the
// directory is fsynced afterwards, so a crash at any point leaves a state
// from which a rerun reaches the same result.
func (RootDir) EnsureMutableLink(root string, dryRun bool) (LinkState, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return 0, err
	}
	defer unix.Close(rootfd)
	full := path.Join(root, MutableLinkDir, MutableLinkName)
	dirfd, err := openInRoot(rootfd, MutableLinkDir, unix.O_PATH|unix.O_DIRECTORY, false)
	if errors.Is(err, unix.ENOENT) {
		if dryRun {
			return LinkWouldCreate, nil
		}
		dirfd, err = mkdirAllInRoot(rootfd, root, MutableLinkDir)
	}
	if err != nil {
		return 0, err
	}
	defer unix.Close(dirfd)
	for attempt := 0; ; attempt++ {
		st, err := fstatat(dirfd, MutableLinkName, full, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
			target, err := readlinkat(dirfd, MutableLinkName, full)
			if err != nil {
				return 0, err
			}
			if path.Clean(target) == MutableLinkTarget {
				return LinkPresent, nil
			}
			return LinkForeign, nil
		case err == nil:
			return LinkForeign, nil
		case !errors.Is(err, unix.ENOENT):
			return 0, err
		}
		if dryRun {
			return LinkWouldCreate, nil
		}
		err = symlinkat(MutableLinkTarget, dirfd, MutableLinkName, full)
		if errors.Is(err, unix.EEXIST) && attempt == 0 {
			continue // raced with someone else; look again
		}
		if err != nil {
			return 0, err
		}
		return LinkCreated, fsyncDir(dirfd, path.Join(root, MutableLinkDir))
	}
}

// mkdirAllInRoot creates rel (and its parents) inside the root, each with
// mode 0755, fsyncing each parent after a creation, and returns an O_PATH
// fd of the final directory. Components that exist are followed inside the
// root (e.g. /var being a symlink in the root).
func mkdirAllInRoot(rootfd int, root, rel string) (int, error) {
	parts := strings.Split(rel, "/")
	cur := ""
	for _, p := range parts {
		next := path.Join(cur, p)
		fd, err := openInRoot(rootfd, next, unix.O_PATH|unix.O_DIRECTORY, false)
		if err == nil {
			unix.Close(fd)
			cur = next
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return -1, err
		}
		parent := "."
		if cur != "" {
			parent = cur
		}
		pfd, err := openInRoot(rootfd, parent, unix.O_PATH|unix.O_DIRECTORY, false)
		if err != nil {
			return -1, err
		}
		err = mkdirat(pfd, p, path.Join(root, next), 0o755)
		if err == nil {
			err = fsyncDir(pfd, path.Join(root, cur))
		} else if errors.Is(err, unix.EEXIST) {
			err = nil
		}
		unix.Close(pfd)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return openInRoot(rootfd, rel, unix.O_PATH|unix.O_DIRECTORY, false)
}

// SysextMasked reports whether systemd-sysext.service is masked in the
// root: etc/systemd/system/systemd-sysext.service is a symlink to
// /dev/null, or (resolved inside the root) an empty file or the null
// device, the cases systemd loads as "masked" (systemd.unit(5)). Flatcar's
// bootengine checks the same path to skip its initrd sysext merge.
func (RootDir) SysextMasked(root string) (bool, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return false, err
	}
	defer unix.Close(rootfd)
	full := path.Join(root, SysextUnitPath)
	dir, name := path.Split(SysextUnitPath)
	dirfd, err := openInRoot(rootfd, strings.TrimSuffix(dir, "/"), unix.O_PATH|unix.O_DIRECTORY, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(dirfd)
	st, err := fstatat(dirfd, name, full, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, err := readlinkat(dirfd, name, full)
		if err != nil {
			return false, err
		}
		if path.Clean(target) == "/dev/null" {
			return true, nil
		}
		fd, err := openInRoot(rootfd, SysextUnitPath, unix.O_PATH, false)
		if err != nil {
			// A dangling link is a broken unit, not a mask.
			if errors.Is(err, unix.ENOENT) {
				return false, nil
			}
			return false, err
		}
		defer unix.Close(fd)
		st, err = fstatat(fd, "", full, unix.AT_EMPTY_PATH)
		if err != nil {
			return false, err
		}
	}
	return isNullOrEmpty(st), nil
}

func isNullOrEmpty(st unix.Stat_t) bool {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return st.Size == 0
	case unix.S_IFCHR:
		return unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3
	}
	return false
}

var _ RootOps = RootDir{}

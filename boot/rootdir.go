package boot

import (
	"errors"
	"path"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// LinkState says what EnsureMutableLink found or did.
type LinkState int

// LinkState values.
const (
	// LinkCreated means the symlink was created now.
	LinkCreated LinkState = iota
	// LinkPresent means the symlink to /etc was already there (rerun).
	LinkPresent
	// LinkWouldCreate means a dry run found no symlink and would create it.
	LinkWouldCreate
	// LinkForeign means something else is there (a user's directory or another
	// link) and was left alone; the engine's mutable mode uses it as is.
	LinkForeign
)

// String is the word the stage summary logs for s.
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

// RootDir implements RootOps by file descriptor through rootfs: every path
// is resolved inside the root with openat2(RESOLVE_IN_ROOT), so symlinks in
// the root (absolute ones included) never lead into the initrd.
type RootDir struct{}

// EnsureMutableLink creates var/lib/extensions.mutable (0755, like
// systemd's "yes" mode) and the symlink etc -> /etc in it, but only where
// nothing exists yet: a user's real directory or another link is kept.
// rootfs creates directories and the link crash-safely (the link under a
// temp name renamed into place, directories fsynced), so a crash at any
// point leaves a state from which a rerun reaches the same result.
func (RootDir) EnsureMutableLink(root string, dryRun bool) (LinkState, error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if dryRun {
		if _, err := r.Stat(MutableLinkDir); errors.Is(err, unix.ENOENT) {
			return LinkWouldCreate, nil
		}
	} else if err := r.MkdirAll(MutableLinkDir, 0o755); err != nil {
		return 0, err
	}
	link := path.Join(MutableLinkDir, MutableLinkName)
	st, err := r.Lstat(link)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
		target, err := r.Readlink(link)
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
	// Only the initrd's pre stage creates the link (one unit, one run),
	// so nothing races the Lstat above.
	if err := r.SymlinkAtomic(MutableLinkTarget, link); err != nil {
		return 0, err
	}
	return LinkCreated, nil
}

// SysextMasked reports whether systemd-sysext.service is masked in the
// root: etc/systemd/system/systemd-sysext.service is a symlink to
// /dev/null, or (resolved inside the root) an empty file or the null
// device, the cases systemd loads as "masked" (systemd.unit(5)). Flatcar's
// bootengine checks the same path to skip its initrd sysext merge.
func (RootDir) SysextMasked(root string) (bool, error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return false, err
	}
	defer r.Close()
	st, err := r.Lstat(SysextUnitPath)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, err := r.Readlink(SysextUnitPath)
		if err != nil {
			return false, err
		}
		if path.Clean(target) == "/dev/null" {
			return true, nil
		}
		st, err = r.Stat(SysextUnitPath)
		if errors.Is(err, unix.ENOENT) {
			return false, nil // a dangling link is a broken unit, not a mask
		}
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

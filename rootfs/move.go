package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// Move moves src to dst inside the root, replacing dst like rename(2).
//
// On one filesystem it is a rename. Across filesystems (EXDEV) it copies
// src to a temp name in dst's directory, fsyncs it, renames it to dst,
// fsyncs dst's directory, then removes src and fsyncs src's directory.
// Regular files, symlinks and directory trees are supported; mode, owner,
// times and the xattrs the target accepts are kept (not on symlinks), and
// a file's holes stay holes (copyData, copyXattrs in sparse.go).
//
// Crash safety: a crash at any point leaves src and/or a complete dst, plus
// at most a temp (removed by CleanTemps or the next Move). Running Move
// again converges: if dst is complete and src is still present with the
// same content, src is removed without copying again; if src is gone and
// dst exists, the move is taken as done and Move returns nil.
//
// If the copy fails (for example ENOSPC, which errors.Is reports through the
// returned error), the temp is removed and src is left untouched.
func (r *Root) Move(src, dst string) error {
	sp, sbase, err := r.openParent(src)
	if err != nil {
		return r.moveDone(src, dst, err)
	}
	defer sp.Close()
	dp, dbase, err := r.openParent(dst)
	if err != nil {
		return err
	}
	defer dp.Close()
	spfd, dpfd := int(sp.Fd()), int(dp.Fd())

	err = step("rename " + src + " -> " + dst)
	if err == nil {
		err = renameat(spfd, sbase, dpfd, dbase)
	}
	if err == nil {
		if err := r.syncDir(dp, dp.Name()); err != nil {
			return err
		}
		if !sameFile(sp, dp) {
			return r.syncDir(sp, sp.Name())
		}
		return nil
	}
	if !errors.Is(err, unix.EXDEV) {
		err = &os.LinkError{Op: "move", Old: r.display(src), New: r.display(dst), Err: err}
		return r.finishDone(sp, sbase, src, dst, err)
	}

	// rename(2) reports EXDEV before it looks at the source, so a source
	// removed by an earlier run only shows up here.
	same, err := sameTree(spfd, sbase, dpfd, dbase)
	if err != nil {
		err = fmt.Errorf("move %s -> %s: compare: %w", r.display(src), r.display(dst), err)
		return r.finishDone(sp, sbase, src, dst, err)
	}
	if !same {
		tmp := tempName(dbase)
		if err := r.removeStale(dp, tmp, r.display(dst)); err != nil {
			return err
		}
		if err := copyTree(spfd, sbase, dpfd, tmp, r.display(src)); err != nil {
			removeTree(dpfd, tmp, dp.Name()+"/"+tmp, mustMountID(dpfd))
			return fmt.Errorf("move %s -> %s: copy (source kept): %w", r.display(src), r.display(dst), err)
		}
		err := step("rename temp to " + dst)
		if err == nil {
			err = renameat(dpfd, tmp, dpfd, dbase)
		}
		if err != nil {
			removeTree(dpfd, tmp, dp.Name()+"/"+tmp, mustMountID(dpfd))
			return r.errPath("move: rename temp to", dst, err)
		}
		if err := r.syncDir(dp, dp.Name()); err != nil {
			return err
		}
	}
	if err := r.removeSource(sp, sbase, src); err != nil {
		return fmt.Errorf("move %s -> %s: copied, but removing the source failed: %w", r.display(src), r.display(dst), err)
	}
	return r.syncDir(sp, sp.Name())
}

// removeSource removes the moved source. A directory is first renamed to
// its temp name, atomically, so that a crash while deleting its contents
// leaves a temp rather than a half-deleted source that the next run would
// mistake for different content.
func (r *Root) removeSource(sp *os.File, sbase, src string) error {
	var st unix.Stat_t
	if err := fstatat(int(sp.Fd()), sbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return r.errPath("lstat", src, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		err := step("remove " + src)
		if err == nil {
			err = unlinkat(int(sp.Fd()), sbase, 0)
		}
		return r.errPath("remove", src, err)
	}
	tmp := tempName(sbase)
	if err := r.removeStale(sp, tmp, r.display(src)); err != nil {
		return err
	}
	if err := step("rename source to temp " + src); err != nil {
		return r.errPath("rename to temp", src, err)
	}
	if err := renameat(int(sp.Fd()), sbase, int(sp.Fd()), tmp); err != nil {
		return r.errPath("rename to temp", src, err)
	}
	if err := r.syncDir(sp, sp.Name()); err != nil {
		return err
	}
	return r.removeAllAt(sp, tmp, sp.Name()+"/"+tmp)
}

// finishDone is moveDone for a Move that got as far as opening src's
// parent: when the move turns out to be done, it also removes the source
// temp a crash during removeSource may have left.
func (r *Root) finishDone(sp *os.File, sbase, src, dst string, err error) error {
	if err = r.moveDone(src, dst, err); err != nil {
		return err
	}
	tmp := tempName(sbase)
	var st unix.Stat_t
	if fstatat(int(sp.Fd()), tmp, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return nil
	}
	if err := r.removeAllAt(sp, tmp, sp.Name()+"/"+tmp); err != nil {
		return err
	}
	return r.syncDir(sp, sp.Name())
}

// moveDone turns "src does not exist" into success when dst exists: a
// previous run already completed the move (see Move).
func (r *Root) moveDone(src, dst string, err error) error {
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if ok, _ := r.Exists(src); ok {
		return err
	}
	if ok, _ := r.Exists(dst); ok {
		return nil
	}
	return err
}

// SameContent reports whether a and b inside the root hold the same
// content, compared byte by byte the way Move decides that an earlier run
// already copied src (files: type, size and bytes; symlinks: target;
// directories: recursively). A final symlink is compared, not followed;
// a missing b is false, a missing a an error.
func (r *Root) SameContent(a, b string) (bool, error) {
	ap, abase, err := r.openParent(a)
	if err != nil {
		return false, err
	}
	defer ap.Close()
	bp, bbase, err := r.openParent(b)
	if err != nil {
		return false, err
	}
	defer bp.Close()
	same, err := sameTree(int(ap.Fd()), abase, int(bp.Fd()), bbase)
	if err != nil {
		return false, fmt.Errorf("compare %s with %s: %w", r.display(a), r.display(b), err)
	}
	return same, nil
}

// mustMountID is mountID for cleanup paths, where a failure only means the
// cleanup will refuse to descend.
func mustMountID(fd int) uint64 {
	m, _ := sysx.MountID(fd, "")
	return m
}

// CleanTemps removes the temp names (.NAME.ext-setup-root-tmp) a crash may
// have left in the directory dir inside the root, and fsyncs dir if it
// removed any.
func (r *Root) CleanTemps(dir string) error {
	d, err := r.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return r.errPath("readdir", dir, err)
	}
	removed := false
	for _, n := range names {
		if !IsTempName(n) {
			continue
		}
		if err := r.removeAllAt(d, n, d.Name()+"/"+n); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return r.syncDir(d, d.Name())
	}
	return nil
}

// copyTree copies the entry sname of sdir to the new name dname in ddir
// (which must not exist), fsyncing every file and directory it creates.
func copyTree(sdir int, sname string, ddir int, dname, display string) error {
	var st unix.Stat_t
	if err := fstatat(sdir, sname, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: display, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return copyFile(sdir, sname, ddir, dname, display, &st)
	case unix.S_IFLNK:
		target, err := readlinkat(sdir, sname)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: display, Err: err}
		}
		if err := step("copy symlink " + display); err != nil {
			return &os.PathError{Op: "symlink copy of", Path: display, Err: err}
		}
		if err := symlinkat(target, ddir, dname); err != nil {
			return &os.PathError{Op: "symlink copy of", Path: display, Err: err}
		}
		// As for files: the owner is kept where the caller may set it
		// (EPERM for an unprivileged caller is not an error).
		if err := sysx.Retry(func() error {
			return unix.Fchownat(ddir, dname, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil && !errors.Is(err, unix.EPERM) {
			return &os.PathError{Op: "chown copy of", Path: display, Err: err}
		}
		return nil
	case unix.S_IFDIR:
		if err := step("copy dir " + display); err != nil {
			return &os.PathError{Op: "mkdir copy of", Path: display, Err: err}
		}
		if err := mkdirat(ddir, dname, 0o700); err != nil {
			return &os.PathError{Op: "mkdir copy of", Path: display, Err: err}
		}
		sfd, err := openat(sdir, sname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return &os.PathError{Op: "open", Path: display, Err: err}
		}
		s := os.NewFile(uintptr(sfd), display)
		defer s.Close()
		dfd, err := openat(ddir, dname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return &os.PathError{Op: "open copy of", Path: display, Err: err}
		}
		d := os.NewFile(uintptr(dfd), display)
		defer d.Close()
		names, err := s.Readdirnames(-1)
		if err != nil {
			return &os.PathError{Op: "readdir", Path: display, Err: err}
		}
		for _, n := range names {
			if err := copyTree(sfd, n, dfd, n, display+"/"+n); err != nil {
				return err
			}
		}
		if err := setMeta(sfd, dfd, &st); err != nil {
			return &os.PathError{Op: "set metadata of copy of", Path: display, Err: err}
		}
		if err := step("fsync copy of dir " + display); err != nil {
			return &os.PathError{Op: "fsync copy of", Path: display, Err: err}
		}
		if err := fsync(dfd); err != nil {
			return &os.PathError{Op: "fsync copy of", Path: display, Err: err}
		}
		return nil
	default:
		return &os.PathError{Op: "copy", Path: display, Err: fmt.Errorf("unsupported file type %#o: %w", st.Mode&unix.S_IFMT, unix.EOPNOTSUPP)}
	}
}

// copyFile copies a regular file with its metadata and fsyncs the copy.
func copyFile(sdir int, sname string, ddir int, dname, display string, st *unix.Stat_t) error {
	sfd, err := openat(sdir, sname, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: display, Err: err}
	}
	s := os.NewFile(uintptr(sfd), display)
	defer s.Close()
	if err := step("create copy of " + display); err != nil {
		return &os.PathError{Op: "create copy of", Path: display, Err: err}
	}
	dfd, err := openat(ddir, dname, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return &os.PathError{Op: "create copy of", Path: display, Err: err}
	}
	d := os.NewFile(uintptr(dfd), display)
	defer d.Close()
	if err := step("write copy of " + display); err != nil {
		return &os.PathError{Op: "write copy of", Path: display, Err: err}
	}
	if err := copyData(s, d, st.Size); err != nil {
		return &os.PathError{Op: "write copy of", Path: display, Err: bareErr(err)}
	}
	if err := setMeta(sfd, dfd, st); err != nil {
		return &os.PathError{Op: "set metadata of copy of", Path: display, Err: err}
	}
	if err := step("fsync copy of " + display); err != nil {
		return &os.PathError{Op: "fsync copy of", Path: display, Err: err}
	}
	if err := fsync(dfd); err != nil {
		return &os.PathError{Op: "fsync copy of", Path: display, Err: err}
	}
	return nil
}

// setMeta gives the copy fd the owner, xattrs, mode and times of the
// source sfd (whose status is st). Filesystems without owners (vfat)
// refuse chown with EPERM; that is not an error. The xattrs follow the
// chown, which would clear security.capability, and precede the chmod,
// which keeps an ACL's mask in line with the mode; the ones the target
// refuses are skipped (copyXattrs).
func setMeta(sfd, fd int, st *unix.Stat_t) error {
	if err := sysx.Retry(func() error { return unix.Fchown(fd, int(st.Uid), int(st.Gid)) }); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	if _, err := copyXattrs(sfd, fd); err != nil {
		return err
	}
	if err := sysx.Retry(func() error { return unix.Fchmod(fd, st.Mode&0o7777) }); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
}

// sameTree reports whether the entry aname of adir exists as bname of bdir
// with the same type and content (file bytes, link target, directory
// entries recursively), which after a crashed cross-filesystem move means
// the copy is complete.
func sameTree(adir int, aname string, bdir int, bname string) (bool, error) {
	var sa, sb unix.Stat_t
	if err := fstatat(adir, aname, &sa, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, err
	}
	if err := fstatat(bdir, bname, &sb, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	if sa.Mode&unix.S_IFMT != sb.Mode&unix.S_IFMT {
		return false, nil
	}
	switch sa.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if sa.Size != sb.Size {
			return false, nil
		}
		return sameBytes(adir, aname, bdir, bname)
	case unix.S_IFLNK:
		ta, err := readlinkat(adir, aname)
		if err != nil {
			return false, err
		}
		tb, err := readlinkat(bdir, bname)
		return err == nil && ta == tb, err
	case unix.S_IFDIR:
		afd, err := openat(adir, aname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return false, err
		}
		a := os.NewFile(uintptr(afd), aname)
		defer a.Close()
		bfd, err := openat(bdir, bname, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return false, err
		}
		b := os.NewFile(uintptr(bfd), bname)
		defer b.Close()
		an, err := a.Readdirnames(-1)
		if err != nil {
			return false, err
		}
		bn, err := b.Readdirnames(-1)
		if err != nil {
			return false, err
		}
		if len(an) != len(bn) {
			return false, nil
		}
		for _, n := range an {
			same, err := sameTree(afd, n, bfd, n)
			if err != nil || !same {
				return false, err
			}
		}
		return true, nil
	}
	return false, nil
}

// sameBytes compares two regular files of equal size byte by byte.
func sameBytes(adir int, aname string, bdir int, bname string) (bool, error) {
	afd, err := openat(adir, aname, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	a := os.NewFile(uintptr(afd), aname)
	defer a.Close()
	bfd, err := openat(bdir, bname, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	b := os.NewFile(uintptr(bfd), bname)
	defer b.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

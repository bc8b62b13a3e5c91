package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// tempSuffix marks temp names, so that CleanTemps (and a human) can tell
// them from user files.
const tempSuffix = ".ext-setup-root-tmp"

// TempName is the temp name WriteFileAtomic uses for base (for callers
// that clean up after a crashed writer outside a write).
func TempName(base string) string { return tempName(base) }

// tempName is the temp name used for base in the same directory:
// ".BASE.ext-setup-root-tmp", with BASE shortened to fit NAME_MAX.
func tempName(base string) string {
	if max := 255 - len(tempSuffix) - 1; len(base) > max {
		base = base[:max]
	}
	return "." + base + tempSuffix
}

// IsTempName reports whether a directory entry name is one of this
// package's temp names (left behind only by a crash).
func IsTempName(name string) bool {
	return len(name) > 1+len(tempSuffix) && name[0] == '.' && strings.HasSuffix(name, tempSuffix)
}

// syncDir fsyncs the directory d after a fault point, making a completed
// rename, link or unlink in it durable.
func (r *Root) syncDir(d *os.File, dir string) error {
	err := step("fsync dir " + dir)
	if err == nil {
		err = fsync(int(d.Fd()))
	}
	return r.errPath("fsync", dir, err)
}

// removeStale removes a temp name left by an earlier crashed run.
func (r *Root) removeStale(parent *os.File, name, display string) error {
	var st unix.Stat_t
	if err := fstatat(int(parent.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return r.errPath("lstat", display, err)
	}
	return r.removeAllAt(parent, name, display)
}

// MkdirAll creates name and any missing parents inside the root with mode
// (subject to the umask, like mkdir(2)); existing directories, also reached
// through symlinks inside the root, are kept. Each directory whose contents
// it changed is fsynced.
func (r *Root) MkdirAll(name string, mode os.FileMode) error {
	if err := checkName(name); err != nil {
		return r.errPath("mkdir", name, err)
	}
	var comps []string
	for _, c := range strings.Split(name, "/") {
		if c != "" && c != "." {
			comps = append(comps, c)
		}
	}
	cur, err := r.Open("/", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer func() { cur.Close() }()
	for i, c := range comps {
		p := "/" + strings.Join(comps[:i+1], "/")
		fd, err := r.openIn(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if errors.Is(err, unix.ENOENT) {
			err = step("mkdir " + p)
			if err == nil {
				err = mkdirat(int(cur.Fd()), c, uint32(mode.Perm()))
			}
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return r.errPath("mkdir", p, err)
			}
			if err == nil {
				if err := r.syncDir(cur, cur.Name()); err != nil {
					return err
				}
			}
			fd, err = r.openIn(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		}
		if err != nil {
			return r.errPath("mkdir", p, err)
		}
		cur.Close()
		cur = os.NewFile(uintptr(fd), r.display(p))
	}
	return nil
}

// WriteFileAtomic replaces name with a regular file holding data and mode
// (exactly, umask not applied): it writes a temp in the same directory,
// fsyncs it, renames it over name and fsyncs the directory. A final
// symlink at name is replaced, not followed.
func (r *Root) WriteFileAtomic(name string, data []byte, mode os.FileMode) error {
	parent, base, err := r.openParent(name)
	if err != nil {
		return err
	}
	defer parent.Close()
	tmp := tempName(base)
	f, err := r.createTemp(parent, tmp, name)
	if err != nil {
		return err
	}
	err = r.fillTemp(f, name, func() error {
		if err := step("write temp " + name); err != nil {
			return err
		}
		_, err := f.Write(data)
		return err
	}, uint32(mode.Perm()), -1, -1)
	if err == nil {
		err = r.commitTemp(parent, tmp, base, name)
	}
	if err != nil {
		unlinkat(int(parent.Fd()), tmp, 0)
		return err
	}
	return nil
}

// createTemp creates the temp file tmp in parent exclusively, clearing a
// stale one from a crashed run first.
func (r *Root) createTemp(parent *os.File, tmp, name string) (*os.File, error) {
	disp := r.display(name)
	if err := r.removeStale(parent, tmp, disp); err != nil {
		return nil, err
	}
	if err := step("create temp for " + name); err != nil {
		return nil, r.errPath("create temp for", name, err)
	}
	fd, err := openat(int(parent.Fd()), tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, r.errPath("create temp for", name, err)
	}
	return os.NewFile(uintptr(fd), parent.Name()+"/"+tmp), nil
}

// fillTemp runs write on the temp f, sets its mode (and owner unless uid is
// -1), fsyncs and closes it. f is closed in every case.
func (r *Root) fillTemp(f *os.File, name string, write func() error, mode uint32, uid, gid int) error {
	defer f.Close()
	if err := write(); err != nil {
		return r.errPath("write temp for", name, bareErr(err))
	}
	if err := step("chmod temp " + name); err != nil {
		return r.errPath("chmod temp for", name, err)
	}
	if err := sysx.Retry(func() error { return unix.Fchmod(int(f.Fd()), mode) }); err != nil {
		return r.errPath("chmod temp for", name, err)
	}
	if uid >= 0 {
		err := sysx.Retry(func() error { return unix.Fchown(int(f.Fd()), uid, gid) })
		// Filesystems without owners (vfat) refuse; the copy is still good.
		if err != nil && !errors.Is(err, unix.EPERM) {
			return r.errPath("chown temp for", name, err)
		}
	}
	if err := step("fsync temp " + name); err != nil {
		return r.errPath("fsync temp for", name, err)
	}
	if err := fsync(int(f.Fd())); err != nil {
		return r.errPath("fsync temp for", name, err)
	}
	return nil
}

// bareErr strips an *os.PathError naming the temp file, so the error
// names the target instead; the errno stays reachable for errors.Is.
func bareErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// commitTemp renames tmp over base in parent and fsyncs parent.
func (r *Root) commitTemp(parent *os.File, tmp, base, name string) error {
	if err := step("rename temp to " + name); err != nil {
		return r.errPath("rename temp to", name, err)
	}
	if err := renameat(int(parent.Fd()), tmp, int(parent.Fd()), base); err != nil {
		return r.errPath("rename temp to", name, err)
	}
	return r.syncDir(parent, parent.Name())
}

// SymlinkAtomic makes name a symlink to target, replacing an existing
// symlink or file at name atomically (symlink to a temp name, rename over
// name, fsync the directory): readers see the old or the new link, never
// none. An existing directory at name is not replaced (error).
func (r *Root) SymlinkAtomic(target, name string) error {
	if err := checkName(target); err != nil {
		return r.errPath("symlink", name, err)
	}
	parent, base, err := r.openParent(name)
	if err != nil {
		return err
	}
	defer parent.Close()
	tmp := tempName(base)
	if err := r.removeStale(parent, tmp, r.display(name)); err != nil {
		return err
	}
	if err := step("symlink temp " + name + " -> " + target); err != nil {
		return r.errPath("symlink temp for", name, err)
	}
	if err := symlinkat(target, int(parent.Fd()), tmp); err != nil {
		return r.errPath("symlink temp for", name, err)
	}
	if err := r.commitTemp(parent, tmp, base, name); err != nil {
		unlinkat(int(parent.Fd()), tmp, 0)
		return err
	}
	return nil
}

// Rename renames oldname to newname inside the root (same filesystem),
// replacing newname like rename(2), and fsyncs both directories.
func (r *Root) Rename(oldname, newname string) error {
	op, obase, err := r.openParent(oldname)
	if err != nil {
		return err
	}
	defer op.Close()
	np, nbase, err := r.openParent(newname)
	if err != nil {
		return err
	}
	defer np.Close()
	err = step("rename " + oldname + " -> " + newname)
	if err == nil {
		err = renameat(int(op.Fd()), obase, int(np.Fd()), nbase)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: r.display(oldname), New: r.display(newname), Err: err}
	}
	if err := r.syncDir(np, np.Name()); err != nil {
		return err
	}
	if !sameFile(op, np) {
		return r.syncDir(op, op.Name())
	}
	return nil
}

// sameFile reports whether two open files are the same inode.
func sameFile(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	if sysx.Retry(func() error { return unix.Fstat(int(a.Fd()), &sa) }) != nil || sysx.Retry(func() error { return unix.Fstat(int(b.Fd()), &sb) }) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// Remove removes name (a file, symlink or empty directory; a final
// symlink is removed, never followed) and fsyncs its directory.
func (r *Root) Remove(name string) error {
	parent, base, err := r.openParent(name)
	if err != nil {
		return err
	}
	defer parent.Close()
	var st unix.Stat_t
	if err := fstatat(int(parent.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return r.errPath("remove", name, err)
	}
	flags := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	if err := step("remove " + name); err != nil {
		return r.errPath("remove", name, err)
	}
	if err := unlinkat(int(parent.Fd()), base, flags); err != nil {
		return r.errPath("remove", name, err)
	}
	return r.syncDir(parent, parent.Name())
}

// RemoveAll removes name and everything below it, never following
// symlinks and refusing (EXDEV) to descend into another mount, then fsyncs
// its directory. A missing name is not an error. After a crash part of the
// tree may be gone; running it again finishes the job.
func (r *Root) RemoveAll(name string) error {
	parent, base, err := r.openParent(name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer parent.Close()
	var st unix.Stat_t
	if err := fstatat(int(parent.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return r.errPath("remove", name, err)
	}
	if err := r.removeAllAt(parent, base, r.display(name)); err != nil {
		return err
	}
	return r.syncDir(parent, parent.Name())
}

// RemoveAllIn removes the entry name (one plain name, no "/") of the
// directory dir recursively, for directories without a path in a Root (a
// detached clone, an O_PATH fd from OpenIn): like RemoveAll it never
// follows symlinks and refuses (EXDEV) to descend into another mount, and
// a missing name is not an error. It does not fsync dir (an O_PATH fd
// cannot be), so it is for scratch entries such as a failed build's work
// dir, whose removal a crash may undo harmlessly.
func RemoveAllIn(dir *os.File, name string) error {
	display := dir.Name() + "/" + name
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return &os.PathError{Op: "remove", Path: display, Err: unix.EINVAL}
	}
	mnt, err := sysx.MountID(int(dir.Fd()), "")
	if err != nil {
		return &os.PathError{Op: "statx", Path: dir.Name(), Err: err}
	}
	err = removeTree(int(dir.Fd()), name, display, mnt)
	runtime.KeepAlive(dir)
	return err
}

// removeAllAt removes the entry base of directory parent recursively
// without crossing mounts; display names it in errors.
func (r *Root) removeAllAt(parent *os.File, base, display string) error {
	mnt, err := sysx.MountID(int(parent.Fd()), "")
	if err != nil {
		return &os.PathError{Op: "statx", Path: parent.Name(), Err: err}
	}
	return removeTree(int(parent.Fd()), base, display, mnt)
}

// removeTree removes name below dirfd, staying on mount mnt.
func removeTree(dirfd int, name, display string, mnt uint64) error {
	var st unix.Stat_t
	if err := fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "lstat", Path: display, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := step("remove " + display); err != nil {
			return &os.PathError{Op: "remove", Path: display, Err: err}
		}
		if err := unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "remove", Path: display, Err: err}
		}
		return nil
	}
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: display, Err: err}
	}
	d := os.NewFile(uintptr(fd), display)
	defer d.Close()
	if m, err := sysx.MountID(fd, ""); err != nil || m != mnt {
		if err == nil {
			err = unix.EXDEV
		}
		return &os.PathError{Op: "remove (mount point, not crossing)", Path: display, Err: err}
	}
	// All names first: deleting while reading a directory may skip entries.
	names, err := d.Readdirnames(-1)
	if err != nil {
		return &os.PathError{Op: "readdir", Path: display, Err: err}
	}
	for _, n := range names {
		if err := removeTree(fd, n, display+"/"+n, mnt); err != nil {
			return err
		}
	}
	if err := step("remove dir " + display); err != nil {
		return &os.PathError{Op: "remove", Path: display, Err: err}
	}
	if err := unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: display, Err: err}
	}
	return nil
}

// WriteHostFileAtomic writes data to a host path outside any target root
// (ext-setup-root's own state under /run, for example) with the same crash
// safety as Root.WriteFileAtomic: temp file, fsync, rename, fsync of the
// directory. Missing parents are created with dirMode. It exists so that
// every package writing state shares one implementation of that discipline.
func WriteHostFileAtomic(path string, data []byte, dirMode, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	r, err := Open(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.WriteFileAtomic(filepath.Base(path), data, mode)
}

package prepare

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// oem copies a PXE initrd's OEM tree (Source, a directory of the initrd
// itself) into the root's OEM directory when that is a mount point (the
// OEM partition is mounted): files, directories and symlinks with their
// mode, owner and times, overwriting what is there, as cp -a would. Each
// file is written to a temporary name, fsynced and renamed over the
// target, so a crash leaves either the old or the new file (plus at most a
// temporary, replaced on the rerun).
func (r *run) oem(context.Context) error {
	c := &r.o.Config.OEM
	if fi, err := os.Stat(c.Source); err != nil || !fi.IsDir() {
		return nil
	}
	target := path.Clean(c.Target)
	if !r.mounts[target] {
		r.log.Infof("prepare: %s exists but %s is not mounted; not copied", c.Source, r.display(target))
		return nil
	}
	fd, err := openIn(r.live, target, unix.O_RDONLY|unix.O_DIRECTORY, true)
	if err != nil {
		return pathErr("open", r.display(target), err)
	}
	defer closeFd(fd)
	op := r.log.Op("copy %s into %s", c.Source, r.display(target))
	return op.Finish(r.copyDir(c.Source, fd, target, 0))
}

const maxOEMDepth = 64

func (r *run) copyDir(src string, dst int, dstPath string, depth int) error {
	if depth > maxOEMDepth {
		return fmt.Errorf("%s: deeper than %d levels", src, maxOEMDepth)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		s := path.Join(src, e.Name())
		p := path.Join(dstPath, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(s, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		a := Action{Duty: "oem", Op: "copy", Path: p, Why: "from the initrd's " + s}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if !r.o.DryRun {
				err := retry(func() error { return unix.Mkdirat(dst, e.Name(), 0o700) })
				if err != nil && !errors.Is(err, unix.EEXIST) {
					errs = append(errs, pathErr("mkdir", r.display(p), err))
					continue
				}
				sub, err := openat(dst, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
				if err != nil {
					errs = append(errs, pathErr("open", r.display(p), err))
					continue
				}
				err = r.copyDir(s, sub, p, depth+1)
				if err == nil {
					err = setDirMeta(sub, &st, s)
				}
				closeFd(sub)
				if err != nil {
					errs = append(errs, err)
					continue
				}
			} else if err := r.copyDir(s, -1, p, depth+1); err != nil {
				errs = append(errs, err)
			}
		case unix.S_IFREG, unix.S_IFLNK:
			if !r.o.DryRun {
				if err := copyEntry(s, &st, dst, e.Name()); err != nil {
					errs = append(errs, pathErr("copy to", r.display(p), err))
					continue
				}
			}
		default:
			r.log.Warnf("prepare: %s is not a file, directory or symlink; not copied", s)
			continue
		}
		r.act(a)
		r.res.OEM++
	}
	if !r.o.DryRun && dst >= 0 {
		if err := retry(func() error { return unix.Fsync(dst) }); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// copyEntry copies the file or symlink src to name in dir through a
// temporary name.
func copyEntry(src string, st *unix.Stat_t, dir int, name string) error {
	tmp := "." + name + ".ext-setup-root-tmp"
	unlinkat(dir, tmp, 0)
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		t, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := retry(func() error { return unix.Symlinkat(t, dir, tmp) }); err != nil {
			return err
		}
		if err := retry(func() error {
			return unix.Fchownat(dir, tmp, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
		}); err != nil {
			return err
		}
	} else {
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		fd, err := openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		out := os.NewFile(uintptr(fd), tmp)
		_, err = out.ReadFrom(in)
		if err == nil {
			err = setMeta(fd, st, int(in.Fd()))
		}
		if err == nil {
			err = out.Sync()
		}
		out.Close()
		if err != nil {
			unlinkat(dir, tmp, 0)
			return err
		}
	}
	fault("oem rename " + name)
	return retry(func() error { return unix.Renameat(dir, tmp, dir, name) })
}

// setMeta gives fd the owner, mode, extended attributes (POSIX ACLs
// included) and times of st and the open source src (-1: no xattrs).
func setMeta(fd int, st *unix.Stat_t, src int) error {
	if err := retry(func() error { return unix.Fchown(fd, int(st.Uid), int(st.Gid)) }); err != nil {
		return err
	}
	if err := retry(func() error { return unix.Fchmod(fd, st.Mode&0o7777) }); err != nil {
		return err
	}
	if src >= 0 {
		// After chmod: an access ACL sets the group bits from its mask,
		// which for a copy equals the source's mode anyway.
		if err := copyXattrs(src, fd); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return retry(func() error {
		return unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
	})
}

// setDirMeta is setMeta for a copied directory, its xattrs read from the
// source directory src.
func setDirMeta(fd int, st *unix.Stat_t, src string) error {
	sfd, err := retry2(func() (int, error) {
		return unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return pathErr("open", src, err)
	}
	defer closeFd(sfd)
	return setMeta(fd, st, sfd)
}

// copyXattrs copies every extended attribute of src to dst, as cp -a
// does: user, trusted and security attributes and the POSIX ACLs
// (system.posix_acl_access/default). Like cp -a, an attribute the target
// file system or our privileges refuse (ENOTSUP, EPERM: an SELinux label
// without a policy) is skipped, not an error. The name list is bounded by
// the kernel's XATTR_LIST_MAX (64 KiB), each value by XATTR_SIZE_MAX.
func copyXattrs(src, dst int) error {
	names, err := flistxattr(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		v, err := fgetxattr(src, n)
		if err != nil {
			return fmt.Errorf("getxattr %s: %w", n, err)
		}
		if v == nil {
			continue // removed meanwhile
		}
		err = retry(func() error { return unix.Fsetxattr(dst, n, v, 0) })
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
			continue
		}
		if err != nil {
			return fmt.Errorf("setxattr %s: %w", n, err)
		}
	}
	return nil
}

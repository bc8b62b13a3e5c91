package prepare

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"path"
	"sort"

	"golang.org/x/sys/unix"
)

// dedup removes entries of /etc identical to their vendor default, so that
// a later update of the default is not shadowed by a stale copy. The rules
// are Flatcar's: an entry is a candidate when the default has an entry of
// the same name with the same type, permission bits (including set-id and
// sticky), owner and group; regular files and directories must also have
// the same POSIX ACLs. A symlink goes when its target string is the same,
// a regular file when its content is, a directory when it is empty (after
// its own identical entries went) and not opaque. Nothing below an opaque
// directory (overlayfs trusted.overlay.opaque=y, a directory the user
// recreated, so the default's contents do not show through) is removed,
// nor any other type (devices, whiteouts, fifos, sockets). Other xattrs
// and SELinux labels are not compared. Mounts below /etc are not entered.
func (r *run) dedup(ctx context.Context) error {
	c := &r.o.Config.Dedup
	if r.etc < 0 {
		r.log.Infof("prepare: %s does not exist; no dedup", r.display(r.etcPath))
		return nil
	}
	if c.OptOutFlag != "" {
		dir, rel := r.splitIn(c.OptOutFlag)
		fd, err := openIn(dir, rel, unix.O_PATH, false)
		if err == nil {
			closeFd(fd)
			r.log.Infof("prepare: %s exists; no dedup", r.display(c.OptOutFlag))
			return nil
		}
	}
	def, from, err := r.openDefaults()
	if err != nil {
		return err
	}
	if def < 0 {
		r.log.Infof("prepare: no vendor defaults found (%s); no dedup", from)
		return nil
	}
	defer closeFd(def)
	op := r.log.Op("remove entries of %s identical to the vendor defaults in %s", r.display(r.etcPath), from)
	var st unix.Stat_t
	if err := fstat(r.etc, &st); err != nil {
		return op.Finish(pathErr("stat", r.display(r.etcPath), err))
	}
	d := &deduper{r: r, dev: st.Dev, from: from, buf1: make([]byte, 64<<10), buf2: make([]byte, 64<<10)}
	opaque, err := isOpaque(r.etc)
	if err != nil {
		return op.Finish(pathErr("getxattr", r.display(r.etcPath), err))
	}
	if !opaque {
		d.walk(ctx, r.etc, r.etcPath, def)
	}
	return op.Finish(errors.Join(d.errs...))
}

// openDefaults opens the vendor defaults directory: the default confext's
// etc/ when configured and present, else the first of the directories.
func (r *run) openDefaults() (int, string, error) {
	c := &r.o.Config.Dedup
	var tried []string
	if c.DefaultsConfext != "" {
		fd, where, err := r.openConfextDefaults(c.DefaultsConfext)
		if err != nil {
			return -1, "", err
		}
		if fd >= 0 {
			return fd, where, nil
		}
		tried = append(tried, "confext "+c.DefaultsConfext)
	}
	for _, d := range c.DefaultsDirs {
		fd, err := openIn(r.live, d, unix.O_RDONLY|unix.O_DIRECTORY, false)
		if err == nil {
			return fd, r.display(d), nil
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			return -1, "", pathErr("open", r.display(d), err)
		}
		tried = append(tried, r.display(d))
	}
	return -1, fmt.Sprint(tried), nil
}

// confextDirs are systemd's confext search paths (the image's etc/ tree
// is under NAME/etc for a directory image).
var confextDirs = []string{"/run/confexts", "/var/lib/confexts", "/usr/local/lib/confexts", "/usr/lib/confexts"}

// openConfextDefaults opens etc/ of the confext image name: a directory
// image in the first search path holding it, else (with Options.OpenConfext)
// any image of that name opened the way the merge opens it, dm-verity and
// signature included; -1 when there is none.
func (r *run) openConfextDefaults(name string) (int, string, error) {
	for _, d := range confextDirs {
		p := path.Join(d, name, "etc")
		fd, err := openIn(r.live, p, unix.O_RDONLY|unix.O_DIRECTORY, false)
		if err == nil {
			return fd, r.display(p), nil
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			return -1, "", pathErr("open", r.display(p), err)
		}
	}
	if r.o.OpenConfext == nil {
		return -1, "", nil
	}
	dir, where, release, err := r.o.OpenConfext(name)
	if err != nil {
		return -1, "", fmt.Errorf("vendor defaults from confext %s: %w", name, err)
	}
	if dir == nil {
		return -1, "", nil
	}
	// A duplicate keeps the image's detached mount (and the loop or dm
	// device under it) alive while the dedup reads it; closing it drops
	// them (autoclear, deferred removal).
	fd, err := unix.Dup(int(dir.Fd()))
	release()
	if err != nil {
		return -1, "", pathErr("dup", where, err)
	}
	unix.CloseOnExec(fd)
	return fd, where + " (etc/)", nil
}

type deduper struct {
	r          *run
	dev        uint64
	from       string
	errs       []error
	buf1, buf2 []byte
}

func (d *deduper) fail(err error) {
	if len(d.errs) < 20 {
		d.errs = append(d.errs, err)
	}
}

// walk handles the entries of directory dir (in-root path p) depth first
// against def, the matching defaults directory (-1 when it has none), and
// reports whether dir is left empty (or would be, in a dry run). dir is not
// below an opaque directory and not opaque itself.
func (d *deduper) walk(ctx context.Context, dir int, p string, def int) bool {
	names, err := readNames(dir)
	if err != nil {
		d.fail(pathErr("readdir", d.r.display(p), err))
		return false
	}
	sort.Strings(names)
	left := len(names)
	for _, name := range names {
		if ctx.Err() != nil {
			d.fail(ctx.Err())
			return false
		}
		if d.entry(ctx, dir, path.Join(p, name), name, def) {
			left--
		}
	}
	return left == 0
}

// entry handles one entry and reports whether it is gone (or would be).
func (d *deduper) entry(ctx context.Context, dir int, p, name string, def int) bool {
	var st unix.Stat_t
	if err := fstatat(dir, name, &st); err != nil {
		if !errors.Is(err, unix.ENOENT) {
			d.fail(pathErr("stat", d.r.display(p), err))
		}
		return errors.Is(err, unix.ENOENT)
	}
	typ := st.Mode & unix.S_IFMT
	if typ == unix.S_IFDIR {
		return d.dir(ctx, dir, p, name, def, &st)
	}
	if def < 0 || (typ != unix.S_IFREG && typ != unix.S_IFLNK) {
		return false
	}
	var dst unix.Stat_t
	if err := fstatat(def, name, &dst); err != nil {
		return false
	}
	if !sameMeta(&st, &dst) {
		return false
	}
	if typ == unix.S_IFLNK {
		a, err1 := readlinkat(dir, name)
		b, err2 := readlinkat(def, name)
		if err1 != nil || err2 != nil || a != b {
			return false
		}
		return d.remove(dir, p, name, &st, 0)
	}
	return d.file(dir, p, name, def, &st)
}

// dir handles a directory entry: its contents first (unless it is opaque
// or on another file system), then the directory itself.
func (d *deduper) dir(ctx context.Context, dir int, p, name string, def int, st *unix.Stat_t) bool {
	if st.Dev != d.dev {
		return false // a mount point: not entered, not removed
	}
	fd, err := openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		d.fail(pathErr("open", d.r.display(p), err))
		return false
	}
	defer closeFd(fd)
	opaque, err := isOpaque(fd)
	if err != nil {
		d.fail(pathErr("getxattr", d.r.display(p), err))
		return false
	}
	if opaque {
		return false
	}
	cdef := -1
	if def >= 0 {
		// Follow a symlinked default directory inside the defaults tree.
		cdef, _ = openIn(def, name, unix.O_RDONLY|unix.O_DIRECTORY, false)
	}
	if cdef < 0 {
		// No default directory: nothing below can be identical to one.
		return false
	}
	defer closeFd(cdef)
	if !d.walk(ctx, fd, p, cdef) {
		return false
	}
	var dst, now unix.Stat_t
	if fstatat(def, name, &dst) != nil || !sameMeta(st, &dst) {
		return false
	}
	if eq, err := sameACLs(fd, cdef, true); err != nil || !eq {
		if err != nil {
			d.fail(pathErr("getxattr", d.r.display(p), err))
		}
		return false
	}
	if err := fstat(fd, &now); err != nil {
		return false
	}
	return d.remove(dir, p, name, &now, unix.AT_REMOVEDIR)
}

// file compares a regular file's ACLs and content with the default's
// through fds held open across the unlink's re-check.
func (d *deduper) file(dir int, p, name string, def int, st *unix.Stat_t) bool {
	fd, err := openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		d.fail(pathErr("open", d.r.display(p), err))
		return false
	}
	defer closeFd(fd)
	dfd, err := openat(def, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return false
	}
	defer closeFd(dfd)
	var a, b unix.Stat_t
	if fstat(fd, &a) != nil || fstat(dfd, &b) != nil || a.Ino != st.Ino || a.Size != b.Size ||
		a.Mode&unix.S_IFMT != unix.S_IFREG || b.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	if eq, err := sameACLs(fd, dfd, false); err != nil || !eq {
		if err != nil {
			d.fail(pathErr("getxattr", d.r.display(p), err))
		}
		return false
	}
	if eq, err := sameContent(fd, dfd, d.buf1, d.buf2); err != nil || !eq {
		if err != nil {
			d.fail(pathErr("read", d.r.display(p), err))
		}
		return false
	}
	return d.remove(dir, p, name, &a, 0)
}

func (d *deduper) remove(dir int, p, name string, st *unix.Stat_t, flags int) bool {
	op := "remove"
	if flags&unix.AT_REMOVEDIR != 0 {
		op = "rmdir"
	}
	a := Action{Duty: "dedup", Op: op, Path: p, Why: "identical to the vendor default"}
	if d.r.planned[p] {
		return true // a dry run's reset has it already
	}
	if d.r.o.DryRun {
		d.r.act(a)
		d.r.res.Dedup++
		return true
	}
	fault("dedup " + p)
	err := removeName(dir, name, st, flags)
	switch {
	case err == nil:
		d.r.act(a)
		d.r.res.Dedup++
		return true
	case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST), errors.Is(err, unix.EBUSY):
		return false
	case errors.Is(err, unix.ENOENT):
		return true
	default:
		d.fail(pathErr(op, d.r.display(p), err))
		return false
	}
}

// sameMeta compares what Flatcar's rule compares: type, permission bits
// (with set-id and sticky), owner and group.
func sameMeta(a, b *unix.Stat_t) bool {
	return a.Mode&(unix.S_IFMT|0o7777) == b.Mode&(unix.S_IFMT|0o7777) && a.Uid == b.Uid && a.Gid == b.Gid
}

// sameContent compares two open regular files byte for byte.
func sameContent(a, b int, ba, bb []byte) (bool, error) {
	var off int64
	for {
		na, ea := readFullAt(a, ba, off)
		nb, eb := readFullAt(b, bb, off)
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if na < len(ba) {
			return true, nil
		}
		off += int64(na)
	}
}

// readFullAt fills buf from fd at off, short only at the end of the file.
func readFullAt(fd int, buf []byte, off int64) (int, error) {
	n := 0
	for n < len(buf) {
		var m int
		err := retry(func() (e error) { m, e = unix.Pread(fd, buf[n:], off+int64(n)); return })
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, nil
		}
		n += m
	}
	return n, nil
}

// isOpaque reports whether the directory fd is an opaque overlayfs upper
// directory (trusted.overlay.opaque = "y", as overlayfs writes it when a
// directory is removed and created again).
func isOpaque(fd int) (bool, error) {
	v, err := fgetxattr(fd, "trusted.overlay.opaque")
	if err != nil {
		return false, err
	}
	return string(v) == "y", nil
}

// sameACLs compares the POSIX ACLs of two open files (and the default ACLs
// of two directories). An access ACL of the three base entries only says
// no more than the mode (which is compared already), so it counts as none.
func sameACLs(a, b int, dir bool) (bool, error) {
	names := []string{"system.posix_acl_access"}
	if dir {
		names = append(names, "system.posix_acl_default")
	}
	for i, n := range names {
		va, err := fgetxattr(a, n)
		if err != nil {
			return false, err
		}
		vb, err := fgetxattr(b, n)
		if err != nil {
			return false, err
		}
		if i == 0 {
			va, vb = dropMinimalACL(va), dropMinimalACL(vb)
		}
		if !bytes.Equal(va, vb) {
			return false, nil
		}
	}
	return true, nil
}

// dropMinimalACL returns nil for an ACL xattr holding only the owner,
// group and other entries (4-byte header, 8 bytes an entry).
func dropMinimalACL(v []byte) []byte {
	if len(v) == 4+3*8 {
		return nil
	}
	return v
}

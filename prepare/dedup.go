package prepare

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// dedup removes entries of /etc identical to their vendor default, so that
// a later update of the default is not shadowed by a stale copy. Its
// contract: what a reader of the merged /etc sees is the same before and
// after. So an entry goes only when the layer that would show through at
// its path once it is gone is the default confext, as the merge will stack
// it (layers.go), and that layer's entry is identical: same type,
// permission bits (including set-id and sticky), owner and group, the same
// extended attributes (POSIX ACLs included; overlayfs's own trusted.overlay
// ones, which a reader never sees, aside), and for a symlink the same
// target, for a regular file the same bytes, for a directory nothing left
// in it (after its own identical entries went). A higher confext that has
// the path, or hides it (a whiteout, an opaque or non-directory parent),
// keeps the copy. Nothing below an opaque directory of /etc (the user
// removed and recreated it) is removed, nor any other type (devices, so
// whiteouts stay; fifos, sockets). Mounts below /etc are not entered.
func (r *run) dedup(ctx context.Context) error {
	c := &r.o.Config.Dedup
	if r.etc < 0 {
		r.log.Infof("prepare: %s does not exist; no dedup", r.display(r.etcPath))
		return nil
	}
	if c.OptOutFlag != "" {
		// Resolved in the root: /etc/.no-dup-update may be an absolute
		// symlink to another file of /etc.
		fd, err := openIn(r.in, c.OptOutFlag, unix.O_PATH, false)
		if err == nil {
			closeFd(fd)
			r.log.Infof("prepare: %s exists; no dedup", r.display(c.OptOutFlag))
			return nil
		}
	}
	st, err := r.openStack()
	if err != nil {
		return err
	}
	if st == nil {
		return nil
	}
	defer st.close()
	op := r.log.Op("remove entries of %s identical to the vendor default %s as the merge shows it", r.display(r.etcPath), st.from)
	var est unix.Stat_t
	if err := fstat(r.etc, &est); err != nil {
		return op.Finish(pathErr("stat", r.display(r.etcPath), err))
	}
	d := &deduper{r: r, dev: est.Dev, def: st.def, walk: treeWalk{ctx: ctx, sorted: true},
		buf1: make([]byte, 64<<10), buf2: make([]byte, 64<<10)}
	opaque, err := isOpaque(r.etc)
	if err != nil {
		return op.Finish(pathErr("getxattr", r.display(r.etcPath), err))
	}
	if !opaque {
		d.dir(r.etc, r.etcPath, st.top())
	}
	return op.Finish(d.walk.err())
}

type deduper struct {
	r          *run
	dev        uint64
	def        int // the index of the default confext among the layers
	walk       treeWalk
	buf1, buf2 []byte
}

// lower is a directory of one layer that shows through below the user's
// directory being walked (layer indexes the stack, top first).
type lower struct{ fd, layer int }

// dir handles the entries of the user's directory fd (in-root path p),
// with the layer directories that show through below it, top first, and
// reports whether it is left empty (or would be, in a dry run).
func (d *deduper) dir(fd int, p string, lowers []lower) bool {
	return d.walk.dir(fd, p, d.r.display(p), func(name, sub string) bool {
		return d.entry(fd, sub, name, lowers)
	})
}

// entry handles one entry and reports whether it is gone (or would be).
func (d *deduper) entry(dir int, p, name string, lowers []lower) bool {
	var st unix.Stat_t
	if err := fstatat(dir, name, &st); err != nil {
		if !errors.Is(err, unix.ENOENT) {
			d.walk.fail(pathErr("stat", d.r.display(p), err))
		}
		return errors.Is(err, unix.ENOENT)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return d.subdir(dir, p, name, lowers, &st)
	case unix.S_IFREG, unix.S_IFLNK:
	default:
		return false
	}
	l, lst, ok := shownBelow(lowers, name)
	if !ok || l.layer != d.def || !sameMeta(&st, &lst) {
		return false
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return d.link(dir, p, name, l.fd, &st)
	}
	return d.file(dir, p, name, l.fd, &st)
}

// shownBelow returns the first layer (top first) that has an entry called
// name, and that entry's stat: what a reader sees at that name when the
// user's entry is gone (a whiteout there shows nothing, which no user
// entry equals).
func shownBelow(lowers []lower, name string) (lower, unix.Stat_t, bool) {
	for _, l := range lowers {
		var st unix.Stat_t
		if err := fstatat(l.fd, name, &st); err == nil {
			return l, st, true
		}
	}
	return lower{}, unix.Stat_t{}, false
}

// subdir handles a directory entry: its contents first (unless it is
// opaque, on another file system, or no layer has a directory there),
// then the directory itself.
func (d *deduper) subdir(dir int, p, name string, lowers []lower, st *unix.Stat_t) bool {
	if st.Dev != d.dev {
		return false // a mount point: not entered, not removed
	}
	fd, err := openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		d.walk.fail(pathErr("open", d.r.display(p), err))
		return false
	}
	defer closeFd(fd)
	opaque, err := isOpaque(fd)
	if err != nil || opaque {
		d.walk.fail(pathErr("getxattr", d.r.display(p), err))
		return false
	}
	below, err := d.lowersOf(lowers, name)
	defer closeLowers(below)
	if err != nil {
		d.walk.fail(pathErr("open defaults of", d.r.display(p), err))
		return false
	}
	// No layer directory: nothing below can be identical to a default;
	// and the one that would show must be the default's.
	if len(below) == 0 || !d.dir(fd, p, below) || below[0].layer != d.def {
		return false
	}
	var dst, now unix.Stat_t
	if fstat(below[0].fd, &dst) != nil || !sameMeta(st, &dst) || fstat(fd, &now) != nil {
		return false
	}
	if eq, err := sameXattrs(fd, below[0].fd); err != nil || !eq {
		d.walk.fail(pathErr("getxattr", d.r.display(p), err))
		return false
	}
	if len(below) == 1 {
		// Without the user's directory, one layer's directory alone is
		// shown, and overlayfs lists it as it is: a whiteout in it, hidden
		// while the directory is merged, would appear as a name that
		// cannot be opened (found by the property test).
		if wo, err := hasWhiteout(below[0].fd); err != nil || wo {
			d.walk.fail(pathErr("readdir", d.r.display(p), err))
			return false
		}
	}
	return d.remove(dir, p, name, &now)
}

// hasWhiteout reports whether the directory fd holds a whiteout (a 0:0
// character device).
func hasWhiteout(fd int) (bool, error) {
	names, err := readNames(fd)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := fstatat(fd, n, &st); err != nil {
			return false, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return true, nil
		}
	}
	return false, nil
}

// lowersOf returns the layer directories called name below lowers, as
// overlayfs merges them: top first, down to the first opaque one; a
// non-directory (a file, a symlink, a whiteout) hides the layers below it.
func (d *deduper) lowersOf(lowers []lower, name string) ([]lower, error) {
	var out []lower
	for _, l := range lowers {
		var st unix.Stat_t
		err := fstatat(l.fd, name, &st)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return out, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			break
		}
		fd, err := openat(l.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return out, err
		}
		out = append(out, lower{fd: fd, layer: l.layer})
		if opaque, err := isOpaque(fd); err != nil || opaque {
			return out, err
		}
	}
	return out, nil
}

func closeLowers(ls []lower) {
	for _, l := range ls {
		closeFd(l.fd)
	}
}

// link removes a symlink whose target string and extended attributes are
// the default's.
func (d *deduper) link(dir int, p, name string, def int, st *unix.Stat_t) bool {
	a, err1 := readlinkat(dir, name)
	b, err2 := readlinkat(def, name)
	if err1 != nil || err2 != nil || a != b {
		return false
	}
	eq, err := sameLinkXattrs(dir, def, name)
	if err != nil || !eq {
		d.walk.fail(pathErr("getxattr", d.r.display(p), err))
		return false
	}
	return d.remove(dir, p, name, st)
}

// file compares a regular file's extended attributes and content with the
// default's through fds held open across the unlink's re-check.
func (d *deduper) file(dir int, p, name string, def int, st *unix.Stat_t) bool {
	fd, err := openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		d.walk.fail(pathErr("open", d.r.display(p), err))
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
		a.Mode&unix.S_IFMT != unix.S_IFREG || !sameMeta(&a, &b) {
		return false
	}
	if eq, err := sameXattrs(fd, dfd); err != nil || !eq {
		d.walk.fail(pathErr("getxattr", d.r.display(p), err))
		return false
	}
	if eq, err := sameContent(fd, dfd, d.buf1, d.buf2); err != nil || !eq {
		d.walk.fail(pathErr("read", d.r.display(p), err))
		return false
	}
	return d.remove(dir, p, name, &a)
}

func (d *deduper) remove(dir int, p, name string, st *unix.Stat_t) bool {
	a := Action{Duty: "dedup", Op: removeOp(st), Path: p, Why: "identical to the vendor default"}
	gone, err := d.r.removeEntry(a, dir, name, st, &d.r.res.Dedup)
	d.walk.fail(err)
	return gone
}

// sameMeta compares type, permission bits (with set-id and sticky), owner
// and group.
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

// isOpaque reports whether the directory fd is an opaque overlayfs
// directory (trusted.overlay.opaque = "y", as overlayfs writes it in the
// upper dir when a directory is removed and created again; in a lower
// layer it hides the layers below).
func isOpaque(fd int) (bool, error) {
	v, err := fgetxattr(fd, "trusted.overlay.opaque")
	if err != nil {
		return false, err
	}
	return string(v) == "y", nil
}

var errXattrs = errors.New("too many extended attributes")

// xattrSet reads the extended attributes a reader of the merged tree sees
// on an entry: all but overlayfs's own (trusted.overlay.*, hidden by the
// overlay), an access ACL of the three base entries (which says no more
// than the mode) dropped. list and get read the entry's names and values.
func xattrSet(list func() ([]string, error), get func(string) ([]byte, error)) (map[string]string, error) {
	names, err := list()
	if err != nil {
		return nil, err
	}
	if len(names) > 4096 {
		return nil, errXattrs
	}
	out := map[string]string{}
	for _, n := range names {
		if len(n) >= len("trusted.overlay.") && n[:len("trusted.overlay.")] == "trusted.overlay." {
			continue
		}
		v, err := get(n)
		if err != nil {
			return nil, err
		}
		if n == "system.posix_acl_access" && len(v) == 4+3*8 {
			continue
		}
		out[n] = string(v)
	}
	return out, nil
}

func equalSets(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sameXattrs compares the extended attributes (ACLs included) of two open
// files or directories.
func sameXattrs(a, b int) (bool, error) {
	sa, err := xattrSet(func() ([]string, error) { return flistxattr(a) }, func(n string) ([]byte, error) { return fgetxattr(a, n) })
	if err != nil {
		return false, err
	}
	sb, err := xattrSet(func() ([]string, error) { return flistxattr(b) }, func(n string) ([]byte, error) { return fgetxattr(b, n) })
	if err != nil {
		return false, err
	}
	return equalSets(sa, sb), nil
}

// sameLinkXattrs compares the extended attributes of the symlinks name in
// the directories a and b (a symlink cannot be opened for reading: they
// are read through the directory fd's /proc name, the link not followed).
func sameLinkXattrs(a, b int, name string) (bool, error) {
	set := func(dir int) (map[string]string, error) {
		p := procFdName(dir, name)
		return xattrSet(func() ([]string, error) { return llistxattr(p) }, func(n string) ([]byte, error) { return lgetxattr(p, n) })
	}
	sa, err := set(a)
	if err != nil {
		return false, err
	}
	sb, err := set(b)
	if err != nil {
		return false, err
	}
	return equalSets(sa, sb), nil
}

// describeSkipped names the images the merge leaves out, for the log.
func describeSkipped(skipped []string) string {
	if len(skipped) == 0 {
		return ""
	}
	return fmt.Sprintf(" (left out by the merge: %v)", skipped)
}

package extension

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/cescape"
	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// assemble builds the detached overlay of one hierarchy: a detached tmpfs
// as the meta layer on top, then import dirs, then the image layers (top
// first: the highest name wins), then the host hierarchy. It then writes
// .systemd-<C>/ into the meta layer exactly as systemd does (after the
// overlay exists, because "dev" is the overlay's st_dev, taken by fstat of
// the detached mount before it is attached anywhere) and, for a mutable
// merge, protects .systemd-<C> with a read-only bind of itself, as systemd
// does, inside the still detached tree.
func (e *engine) assemble(b *build, layers []*os.File, names []string, origin []byte) (*os.File, error) {
	op := e.log.Op("assemble %s overlay for %s (%d image layers, upper %v)", e.cls.Name, e.display(b.h), len(layers), b.upper != nil)
	mnt, err := e.assembleInner(b, layers, names, origin)
	return mnt, op.Finish(err)
}

// assembleInner makes the meta layer, mounts the overlay over it, the
// images and the host (detached), then writes the metadata files.
func (e *engine) assembleInner(b *build, layers []*os.File, names []string, origin []byte) (*os.File, error) {
	meta, metaDir, err := e.metaLayer(b)
	if err != nil {
		return nil, err
	}
	defer meta.Close()
	defer metaDir.Close()
	mnt, err := mount.MountOverlay(e.overlaySpec(b, meta, layers))
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			mnt.Close()
		}
	}()
	if err := e.writeMeta(b, mnt, metaDir, names, origin); err != nil {
		return nil, err
	}
	if b.upper != nil {
		if e.kern.DetachedTree {
			if err := e.protectMeta(mnt); err != nil {
				return nil, err
			}
		} else {
			// Before Linux 6.15 nothing can be bound into a detached
			// mount: place() does it right after attaching.
			b.protectLater = true
		}
	}
	ok = true
	return mnt, nil
}

// metaLayer mounts the detached tmpfs of the top lower layer with its
// opaque .systemd-<C> dir; it returns the mount and a readable fd of it.
func (e *engine) metaLayer(b *build) (meta, metaDir *os.File, err error) {
	mfc, err := mount.NewFS("tmpfs", e.cls.Name)
	if err != nil {
		return nil, nil, err
	}
	// The merged root takes the mode of the top layer: the upper if
	// mutable, else this meta layer, which therefore gets the hierarchy's
	// mode (systemd chmods its meta dir the same way).
	err = mfc.SetString("mode", fmt.Sprintf("%04o", b.hostMode))
	if err == nil {
		err = mfc.SetString("size", "1m")
	}
	if err == nil {
		meta, err = mfc.Mount(unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC)
	}
	mfc.Close()
	if err != nil {
		return nil, nil, err
	}
	metaDir, err = reopen(meta, unix.O_RDONLY|unix.O_DIRECTORY)
	if err == nil {
		if err = mkdirat(int(metaDir.Fd()), e.cls.DotDir, 0o755); err != nil {
			err = &os.PathError{Op: "mkdir", Path: "meta layer " + e.cls.DotDir, Err: err}
		} else {
			err = makeOpaque(metaDir, e.cls.DotDir)
		}
	}
	if err != nil {
		if metaDir != nil {
			metaDir.Close()
		}
		meta.Close()
		return nil, nil, err
	}
	return meta, metaDir, nil
}

// overlaySpec lists the layers (meta, imports, images, host) and decides
// the options and mount attributes of the new overlay.
func (e *engine) overlaySpec(b *build, meta *os.File, layers []*os.File) mount.OverlaySpec {
	spec := mount.OverlaySpec{Source: e.cls.Name, Features: e.kern}
	spec.Lower = append(spec.Lower, mount.Layer{File: meta})
	for _, f := range b.imports {
		spec.Lower = append(spec.Lower, mount.Layer{File: f})
	}
	for _, f := range layers {
		spec.Lower = append(spec.Lower, mount.Layer{File: f})
	}
	if b.hostLower {
		spec.Lower = append(spec.Lower, mount.Layer{File: b.host})
	}
	opts := e.getenv(e.cls.OverlayOptionsEnv)
	rw := uint64(0)
	if b.upper != nil {
		spec.Upper, spec.Work = &mount.Layer{File: b.upper}, &mount.Layer{File: b.work}
		rw = unix.MOUNT_ATTR_RDONLY
		if opts == "" {
			opts = mutableDefaultOptions
		}
	}
	// The read-only attribute of the class goes for a mutable merge before
	// the options apply (an explicit "ro" in them still counts).
	spec.Options, spec.Attrs = e.mountAttrsFrom(opts, rw)
	if b.upper == nil {
		// An overlay without upper cannot change anything; the read-only
		// attribute is systemd's "extra turbo safety" remount.
		spec.Attrs |= unix.MOUNT_ATTR_RDONLY
	}
	return spec
}

// writeMeta writes the metadata files of the overlay mnt into the meta
// layer's .systemd-<C> (systemd's set, plus work_dir and backing) and
// keeps that dir for Records.
func (e *engine) writeMeta(b *build, mnt, metaDir *os.File, names []string, origin []byte) error {
	st, err := statFd(mnt)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data string
	}{
		{e.cls.Plural, pluralContent(names)},
		{"origin", string(origin)},
		{"dev", fmt.Sprintf("%d:%d\n", unix.Major(st.Dev), unix.Minor(st.Dev))},
	}
	if b.workRel != "" {
		files = append(files, struct{ name, data string }{"work_dir", cescape.Escape(b.workRel) + "\n"})
	}
	if b.backing != 0 {
		files = append(files, struct{ name, data string }{"backing", fmt.Sprintf("%d:%d\n", unix.Major(b.backing), unix.Minor(b.backing))})
	}
	dot, err := rootfs.OpenIn(metaDir, e.cls.DotDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	defer dot.Close()
	for _, f := range files {
		if err := writeNew(dot, f.name, f.data); err != nil {
			return err
		}
	}
	if e.opt.Records != nil {
		if b.metaDot, err = reopen(dot, unix.O_RDONLY|unix.O_DIRECTORY); err != nil {
			return err
		}
	}
	return nil
}

// pluralContent is the confexts/extensions file: names ascending, each
// followed by a newline; empty when none.
func pluralContent(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return strings.Join(names, "\n") + "\n"
}

// writeNew creates name in dir with data, mode 0644 (systemd: 0666 & ~022).
// The close is checked like the write: a write error the file system
// reports only at close (quota, a full tmpfs) must not leave a meta file
// that looks whole.
func writeNew(dir *os.File, name, data string) (err error) {
	fd, err := openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return &os.PathError{Op: "create", Path: "meta " + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer func() {
		cerr := fault.Point(fault.Write, "close meta "+name)
		if e := f.Close(); cerr == nil {
			cerr = e
		}
		if err == nil && cerr != nil {
			err = &os.PathError{Op: "close", Path: "meta " + name, Err: cerr}
		}
	}()
	if err := fchmod(fd, 0o644); err != nil {
		return &os.PathError{Op: "chmod", Path: "meta " + name, Err: err}
	}
	if err := fault.Point(fault.Write, "write meta "+name); err != nil {
		return &os.PathError{Op: "write", Path: "meta " + name, Err: err}
	}
	if _, err := f.WriteString(data); err != nil {
		return &os.PathError{Op: "write", Path: "meta " + name, Err: err}
	}
	return nil
}

// protectMeta bind-mounts .systemd-<C> of the (detached) overlay onto itself
// read-only, so that writes through a mutable merge cannot alter the
// metadata (which would make systemd think the merge is not its own).
func (e *engine) protectMeta(mnt *os.File) error {
	dot, err := rootfs.OpenIn(mnt, e.cls.DotDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	defer dot.Close()
	bind, err := mount.BindDetached(dot, false)
	if err != nil {
		return err
	}
	defer bind.Close()
	if err := mount.SetAttr(bind, unix.MOUNT_ATTR_RDONLY, 0, 0, false); err != nil {
		return err
	}
	return mount.Attach(bind, dot, false)
}

// makeOpaque marks dir/name opaque for overlayfs (trusted.overlay.opaque
// "y"), set before the overlay is mounted: the merged .systemd-<C> then
// shows only what this meta layer holds, never a .systemd-<C>/ shipped in
// an image below it. Without it an image's etc/.systemd-confext/work_dir
// (a non-mutable merge writes none of its own) was read by unmerge as the
// work dir to remove.
func makeOpaque(dir *os.File, name string) error {
	d, err := rootfs.OpenIn(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := sysx.Retry(func() error { return unix.Fsetxattr(int(d.Fd()), "trusted.overlay.opaque", []byte("y"), 0) }); err != nil {
		return &os.PathError{Op: "setxattr trusted.overlay.opaque", Path: "meta layer " + name, Err: err}
	}
	return nil
}

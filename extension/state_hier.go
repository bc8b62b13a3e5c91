package extension

import (
	"errors"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/cescape"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// hierState is what a hierarchy currently looks like in the root.
type hierState struct {
	h        string   // configured hierarchy, "/etc"
	display  string   // host-visible path, "/sysroot/etc"
	top      *os.File // O_PATH of the hierarchy as seen now (nil if missing)
	ours     bool     // is_our_mount_point
	oldWork  string   // work_dir of the merge in place (root-relative, no "/")
	origin   []byte   // origin of the merge in place
	names    []string // plural file of the merge in place
	metaTime int64    // mtime (usec) of .systemd-<C> of the merge in place
	// metaCovered: another mount covers the merge's .systemd-<C>, so
	// systemd does not see it as a merge (uncoveredMeta); a refresh
	// never skips over it.
	metaCovered bool
}

func (s *hierState) close() {
	if s.top != nil {
		s.top.Close()
		s.top = nil
	}
}

// inspectAll inspects every hierarchy of the class, in order. The states
// it returns, also with an error, must be closed (closeStates).
func (e *engine) inspectAll() ([]*hierState, error) {
	states := make([]*hierState, 0, len(e.hiers))
	for _, h := range e.hiers {
		s, err := e.inspect(h)
		if err != nil {
			return states, err
		}
		states = append(states, s)
	}
	return states, nil
}

func closeStates(states []*hierState) {
	for _, s := range states {
		s.close()
	}
}

// firstOrigin is the hierarchy whose origin record a refresh compares
// with, as systemd picks it: the first one that carries our merge with a
// readable origin file; nil if none does.
func firstOrigin(states []*hierState) *hierState {
	for _, s := range states {
		if s.ours && s.origin != nil {
			return s
		}
	}
	return nil
}

// inspect opens a hierarchy and decides, as systemd's is_our_mount_point
// does, whether it carries a merge of this class: it is a mount point, its
// .systemd-<C>/dev parses as MAJ:MIN and equals its st_dev.
// On an error it returns nil and closes what it opened.
func (e *engine) inspect(h string) (_ *hierState, err error) {
	s := &hierState{h: h, display: e.display(h)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	top, err := openDirIn(e.root, h)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return s, nil
		}
		return nil, err
	}
	s.top = top
	mp, err := mount.IsMountPoint(top)
	if err != nil {
		return nil, err
	}
	if !mp {
		return s, nil
	}
	st, err := statFd(top)
	if err != nil {
		return nil, err
	}
	meta := top
	if !e.devMatches(top, st) {
		// Not ours as systemd decides it, unless another mount covers
		// the merge's own metadata directory (see uncoveredMeta).
		clone := e.uncoveredMeta(top)
		if clone == nil {
			return s, nil
		}
		defer clone.Close()
		if !e.devMatches(clone, st) {
			return s, nil
		}
		s.metaCovered = true
		meta = clone
		e.log.Warnf("the %s merge at %s has another mount over its %s (left by a systemd-%s call that raced another call): systemd no longer recognizes it as a merge; this call treats it as one and does not keep that mount", e.cls.Name, s.display, e.cls.DotDir, e.cls.Name)
	}
	s.ours = true
	if b, err := readFileIn(meta, path.Join(e.cls.DotDir, "work_dir")); err == nil {
		raw := strings.TrimRight(firstLine(b), "\n")
		w, uerr := cescape.Unescape(raw)
		switch {
		case uerr != nil:
			e.log.Warnf("ignoring %s/%s/work_dir %q: not systemd's escaping: %v (nothing will be removed because of it)", s.display, e.cls.DotDir, raw, uerr)
		case e.trustedWorkDir(h, w):
			s.oldWork = w
		default:
			e.log.Warnf("ignoring %s/%s/work_dir %q: not a work dir this tool or systemd creates for %s (nothing will be removed because of it)", s.display, e.cls.DotDir, w, h)
		}
	}
	s.origin, _ = readFileIn(meta, path.Join(e.cls.DotDir, "origin"))
	if b, err := readFileIn(meta, path.Join(e.cls.DotDir, e.cls.Plural)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				s.names = append(s.names, l)
			}
		}
	}
	if d, err := rootfs.OpenIn(meta, e.cls.DotDir, unix.O_PATH|unix.O_NOFOLLOW); err == nil {
		if st, err := statFd(d); err == nil {
			s.metaTime = st.Mtim.Sec*1e6 + st.Mtim.Nsec/1000
		}
		d.Close()
	}
	return s, nil
}

// devMatches returns whether dir's .systemd-<C>/dev names the device st
// is on, as systemd's is_our_mount_point compares.
func (e *engine) devMatches(dir *os.File, st unix.Stat_t) bool {
	b, err := readFileIn(dir, path.Join(e.cls.DotDir, "dev"))
	if err != nil {
		return false
	}
	maj, min, ok := parseDevnum(b)
	return ok && unix.Major(st.Dev) == maj && unix.Minor(st.Dev) == min
}

// uncoveredMeta returns a detached, non-recursive clone of the mount top
// when another mount sits on top's .systemd-<C> directory, so that the
// merge's own metadata can be read under it; nil otherwise.
//
// Why: systemd-<class> takes no lock, and its unmerge first detaches the
// metadata bind of the merge it found and then moves every other
// sub-mount of the hierarchy aside, to put them back on its new merge.
// When another call replaces the merge between those two steps, the
// replacement's own read-only metadata bind is moved aside as an
// ordinary sub-mount and ends up over the new merge's metadata (seen in
// TestConcurrentWithSystemd). The new merge then carries another merge's
// dev file, and neither systemd's unmerge nor its refresh touches it
// again. The clone shows the merge without any sub-mount; closing it
// detaches it.
func (e *engine) uncoveredMeta(top *os.File) *os.File {
	// Only an overlay can be a merge: a hierarchy that is its own file
	// system with something mounted on its .systemd-<C> is left alone.
	var sfs unix.Statfs_t
	if err := sysx.Retry(func() error { return unix.Fstatfs(int(top.Fd()), &sfs) }); err != nil || sfs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		return nil
	}
	d, err := rootfs.OpenIn(top, e.cls.DotDir, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY)
	if err != nil {
		return nil
	}
	defer d.Close()
	metaID, err1 := sysx.MountID(int(d.Fd()), "")
	topID, err2 := sysx.MountID(int(top.Fd()), "")
	if err1 != nil || err2 != nil || metaID == topID {
		return nil
	}
	clone, err := mount.BindDetached(top, false)
	if err != nil {
		return nil
	}
	return clone
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// parseDevnum parses the first line of a dev file, "MAJ:MIN".
func parseDevnum(b []byte) (uint32, uint32, bool) {
	a, c, ok := strings.Cut(strings.TrimSpace(firstLine(b)), ":")
	if !ok {
		return 0, 0, false
	}
	maj, err1 := strconv.ParseUint(a, 10, 32)
	min, err2 := strconv.ParseUint(c, 10, 32)
	return uint32(maj), uint32(min), err1 == nil && err2 == nil
}

// trustedWorkDir reports whether w, read from a merge's work_dir file, names
// a work dir that a merge of hierarchy h can have: a name workName or
// systemd gives, next to the hierarchy or next to its mutable dir. The
// file is read through the merged tree, so whatever is above our meta
// layer (a mutable merge's upper dir, written while nothing was merged)
// could supply it; unmerge removes the directory it names, and a name
// outside this set must never steer that removal. (The meta layer's
// .systemd-<C> is opaque, so the image layers below it cannot.)
func (e *engine) trustedWorkDir(h, w string) bool {
	w = path.Clean("/" + w)
	if !isWorkName(h, path.Base(w)) {
		return false
	}
	dir := path.Dir(w)
	if dir == path.Dir(path.Clean(h)) || dir == path.Dir(mutablePath(h)) {
		return true
	}
	if mp, ok, err := e.resolveMutable(h); err == nil && ok && dir == path.Dir(path.Clean("/"+mp)) {
		return true
	}
	return false
}

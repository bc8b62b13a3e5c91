package extension

import (
	"errors"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/cescape"
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
	dev, err := readFileIn(top, path.Join(e.cls.DotDir, "dev"))
	if err != nil {
		return s, nil
	}
	maj, min, ok := parseDevnum(dev)
	if !ok {
		return s, nil
	}
	st, err := statFd(top)
	if err != nil {
		return nil, err
	}
	if unix.Major(st.Dev) != maj || unix.Minor(st.Dev) != min {
		return s, nil
	}
	s.ours = true
	if b, err := readFileIn(top, path.Join(e.cls.DotDir, "work_dir")); err == nil {
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
	s.origin, _ = readFileIn(top, path.Join(e.cls.DotDir, "origin"))
	if b, err := readFileIn(top, path.Join(e.cls.DotDir, e.cls.Plural)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				s.names = append(s.names, l)
			}
		}
	}
	if d, err := rootfs.OpenIn(top, e.cls.DotDir, unix.O_PATH|unix.O_NOFOLLOW); err == nil {
		if st, err := statFd(d); err == nil {
			s.metaTime = st.Mtim.Sec*1e6 + st.Mtim.Nsec/1000
		}
		d.Close()
	}
	return s, nil
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

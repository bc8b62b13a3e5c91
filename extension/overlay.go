package extension

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// mutableDefaultOptions are systemd's overlay options for a mutable merge:
// redirect_dir=on and noatime avoid needless copy-ups, metacopy=off avoids
// half-copied files after an unmount, and index=off lets the upper and
// work dirs be reused. index=off is also what lets the NEW overlay share
// the upper dir (/etc itself in the Flatcar layout) with the OLD one for
// the instant between mount-beneath and the detach of the old one: with
// index=on overlayfs refuses an upper dir "in use" by another mount (EBUSY);
// with index=off it only warns. The work dir cannot be shared (the kernel
// empties its "work" subdir at mount time, under the old overlay's feet), so
// a replacement uses a different work dir name than the merge in place, as
// systemd PR 43680 does; the name in use is recorded in work_dir.
const mutableDefaultOptions = "redirect_dir=on,noatime,metacopy=off,index=off"

// build is one hierarchy's new overlay under construction. Every fd in it
// belongs to the build and is closed by close().
type build struct {
	h          string
	hostMode   uint32
	host       *os.File // the hierarchy's own directory, below any merge
	clone      *os.File // detached clone used to reach host under a merge
	mutableDir string   // for origin mutableDirs ("" = none)
	upper      *os.File
	work       *os.File
	upperHost  bool   // the upper dir is the hierarchy itself
	workRel    string // work_dir file content (unescaped), "" = none
	workParent *os.File
	workName   string
	workNew    bool // we created the work dir (remove it on failure)
	imports    []*os.File
	hostLower  bool
	backing    uint64 // st_dev of host when it is a block-backed lower
	files      []*os.File
	metaDot    *os.File // .systemd-<C> of the meta layer, for Options.Records
	// protectLater: the read-only bind of .systemd-<C> is made once the
	// merge is attached (kernels without mount.Features.DetachedTree).
	protectLater bool
}

func (b *build) keep(f *os.File) *os.File {
	if f != nil {
		b.files = append(b.files, f)
	}
	return f
}

func (b *build) close() {
	for _, f := range b.files {
		f.Close()
	}
	b.files = nil
	if b.metaDot != nil {
		b.metaDot.Close()
		b.metaDot = nil
	}
}

// abort undoes the disk changes of a failed build (a work dir we created).
func (b *build) abort() {
	if b.workNew && b.workParent != nil {
		// An O_PATH fd serves as dirfd of the *at calls (open(2)), so no
		// reopen is needed. A failure only leaves an unused work dir.
		_ = rootfs.RemoveAllIn(b.workParent, b.workName)
	}
	b.close()
}

// mutablePath is systemd's /var/lib/extensions.mutable/<h>.
func mutablePath(h string) string { return config.MutableDir(h) }

// hostDir returns the hierarchy's own directory: the current one if no
// merge of ours covers it; else, reached through a detached clone (no
// submounts) of the mount holding the hierarchy's mount point, the
// directory UNDER the merge. That is what the new overlay must use as upper
// or lower: the old overlay itself would stack overlays (and vanish with
// it).
func (e *engine) hostDir(s *hierState, b *build) (*os.File, error) {
	if s.top == nil {
		return nil, nil
	}
	if !s.ours {
		return reopen(s.top, unix.O_PATH|unix.O_DIRECTORY)
	}
	if err := e.checkNotStacked(s); err != nil {
		return nil, err
	}
	parent, err := openDirIn(e.root, path.Dir(s.h))
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	clone, err := mount.BindDetached(parent, false)
	if err != nil {
		return nil, fmt.Errorf("reach %s below the merge: %w", s.display, err)
	}
	b.clone = b.keep(clone)
	d, err := rootfs.OpenIn(clone, path.Base(s.h), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, fmt.Errorf("reach %s below the merge: %w", s.display, err)
	}
	return d, nil
}

// unstack repairs what a process killed in the middle of an atomic
// replacement leaves: the new merge mounted beneath the old one, both
// complete. The top one is detached, which uncovers the other: no gap.
// Without this, every later call refused the hierarchy ("unmerge first")
// and a rerun of a boot stage failed (found by the fault-injection test).
// Only a merge of this class (an overlay whose source is the class name)
// directly below ours counts; any other mount below is left to
// checkNotStacked's refusal. Runs under the hierarchy lock.
func (e *engine) unstack(states []*hierState) ([]*hierState, error) {
	for i, s := range states {
		for tries := 0; s.ours && tries < 4; tries++ {
			below, err := e.mountBelow(s)
			if err != nil {
				return states, err
			}
			if below == nil || below.FSType != "overlay" || below.Source != e.cls.Name {
				break
			}
			op := e.log.Op("detach the %s merge at %s stacked on another one (left by an interrupted replacement)", e.cls.Name, s.display)
			if err := op.Finish(mount.UnmountFd(s.top, unix.MNT_DETACH)); err != nil {
				return states, err
			}
			e.mi = nil // the mount table changed
			s.close()
			ns, err := e.inspect(s.h)
			if err != nil {
				states[i] = &hierState{h: s.h, display: s.display}
				return states, err
			}
			// The detached merge's work dir, if the uncovered one uses
			// another, is no longer used by anything.
			e.cleanOldWork(s.oldWork, ns.oldWork)
			states[i], s = ns, ns
		}
	}
	return states, nil
}

// mountBelow returns the mount that the top mount of s covers at the same
// path, or nil.
func (e *engine) mountBelow(s *hierState) (*mount.Info, error) {
	mntID, err := sysx.MountID(int(s.top.Fd()), "")
	if err != nil {
		return nil, &os.PathError{Op: "statx", Path: s.display, Err: err}
	}
	infos, err := e.mountinfo()
	if err != nil {
		return nil, err
	}
	parent := -1
	for _, mi := range infos {
		if uint64(mi.ID) == mntID {
			parent = mi.Parent
		}
	}
	for i, mi := range infos {
		if mi.ID == parent && mi.Mountpoint == s.display {
			return &infos[i], nil
		}
	}
	return nil, nil
}

// checkNotStacked refuses a merge that sits on another mount at the same
// path (e.g. /etc being its own file system, or an earlier overlay): the
// directory below the merge is then the root of that mount, which a clone
// of the parent directory does not reach, and using the clone would merge
// over the wrong (empty) directory. Unmerge first in that case.
func (e *engine) checkNotStacked(s *hierState) error {
	mntID, err := sysx.MountID(int(s.top.Fd()), "")
	if err != nil {
		return &os.PathError{Op: "statx", Path: s.display, Err: err}
	}
	infos, err := e.mountinfo()
	if err != nil {
		return err
	}
	parent := -1
	for _, mi := range infos {
		if uint64(mi.ID) == mntID {
			parent = mi.Parent
		}
	}
	for _, mi := range infos {
		if mi.ID == parent && mi.Mountpoint == s.display {
			return fmt.Errorf("the merge at %s covers another mount at the same path (%s %s); cannot reach the directory below it to replace the merge atomically: unmerge first", s.display, mi.FSType, mi.Source)
		}
	}
	return nil
}

// resolveMutable finds the mutable dir of a hierarchy inside the root:
// its root-stripped resolved path and whether it exists.
func (e *engine) resolveMutable(h string) (string, bool, error) {
	f, err := rootfs.OpenIn(e.root, mutablePath(h), unix.O_PATH)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", false, nil
		}
		return "", false, err
	}
	defer f.Close()
	p, err := fdPath(f)
	if err != nil {
		return "", false, err
	}
	in, err := stripRoot(e.root, p)
	if err != nil {
		return "", false, fmt.Errorf("mutable directory %s: %w", e.display(mutablePath(h)), err)
	}
	return in, true, nil
}

// mutableDirForOrigin computes origin's mutableDirs entry of h for mode,
// without side effects (systemd's overlayfs_paths_new; "yes" creates the
// dir later, at build time).
func (e *engine) mutableDirForOrigin(h, mode string) (string, error) {
	switch mode {
	case "no":
		return "", nil
	case "ephemeral", "ephemeral-import":
		return "/run/systemd/sysext/" + hierName(h), nil
	}
	p, ok, err := e.resolveMutable(h)
	if err != nil || ok {
		return p, err
	}
	if mode == "yes" {
		return mutablePath(h), nil
	}
	return "", nil
}

// prepare decides layers, upper and work dir of one hierarchy for mode and
// creates what systemd creates (mutable dir for "yes", the work dir): the
// host hierarchy, the mutable dir (upper or import), the work dir, then
// whether the host hierarchy is the bottom layer.
func (e *engine) prepare(s *hierState, mode string) (*build, error) {
	b := &build{h: s.h, hostMode: 0o755}
	ok := false
	defer func() {
		if !ok {
			b.abort()
		}
	}()
	if err := e.prepareHost(s, b); err != nil {
		return nil, err
	}
	mp, err := e.prepareMutable(s, b, mode)
	if err != nil {
		return nil, err
	}
	if err := e.prepareWork(s, b, mode, mp); err != nil {
		return nil, err
	}
	if err := prepareHostLower(b); err != nil {
		return nil, err
	}
	ok = true
	return b, nil
}

// prepareHost opens the host hierarchy (nil when missing) and takes its
// mode for the upper dir.
func (e *engine) prepareHost(s *hierState, b *build) error {
	host, err := e.hostDir(s, b)
	if err != nil {
		return err
	}
	b.host = b.keep(host)
	if host != nil {
		st, err := statFd(host)
		if err != nil {
			return err
		}
		b.hostMode = st.Mode & 0o777
	}
	return nil
}

// prepareMutable sets up the mutable dir of mode: the upper dir ("auto",
// "yes", the hierarchy itself when the mutable link points there), an
// import lower ("import", "ephemeral-import") or an ephemeral upper. It
// returns the mutable dir, root-relative, as resolved or created.
func (e *engine) prepareMutable(s *hierState, b *build, mode string) (string, error) {
	mp, mexists, err := e.resolveMutable(s.h)
	if err != nil {
		return "", err
	}
	isHost := mexists && mp == path.Clean(s.h)
	switch mode {
	case "auto", "yes":
		if mp, err = e.prepareUpper(s, b, mode, mp, mexists, isHost); err != nil {
			return "", err
		}
	case "import", "ephemeral-import":
		if mexists {
			if isHost {
				return "", fmt.Errorf("not importing mutable directory %s for hierarchy %s as a lower dir, because it points to the hierarchy itself: %w", e.display(mutablePath(s.h)), s.h, unix.ELOOP)
			}
			d, err := openDirIn(e.root, mutablePath(s.h))
			if err != nil {
				return "", err
			}
			b.imports = append(b.imports, b.keep(d))
			if mode == "import" {
				b.mutableDir = mp
			}
		}
	}
	if mode == "ephemeral" || mode == "ephemeral-import" {
		if err := e.ephemeralUpper(b); err != nil {
			return "", err
		}
		b.mutableDir = "/run/systemd/sysext/" + hierName(s.h)
	}
	return mp, nil
}

// prepareUpper is prepareMutable for modes "auto" and "yes": the mutable
// dir mp (existing: mexists; the hierarchy itself: isHost) becomes the
// upper dir, created in mode "yes", with the host hierarchy's mode.
func (e *engine) prepareUpper(s *hierState, b *build, mode, mp string, mexists, isHost bool) (string, error) {
	if mexists && !isHost {
		if err := e.checkMutableMode(mp, b.hostMode); err != nil {
			return "", err
		}
	}
	if mode == "auto" && !mexists {
		return mp, nil
	}
	if isHost {
		if b.host == nil {
			return "", fmt.Errorf("%s points to %s, which does not exist", e.display(mutablePath(s.h)), s.display)
		}
		b.upper, b.upperHost = b.host, true
	} else {
		d, err := e.mkdirAll(mutablePath(s.h))
		if err != nil {
			return "", fmt.Errorf("create mutable directory %s: %w", e.display(mutablePath(s.h)), err)
		}
		b.upper = b.keep(d)
		p, err := fdPath(d)
		if err == nil {
			mp, err = stripRoot(e.root, p)
		}
		if err != nil {
			return "", fmt.Errorf("mutable directory %s: %w", e.display(mutablePath(s.h)), err)
		}
	}
	if err := fchmodPath(b.upper, b.hostMode); err != nil {
		return "", err
	}
	b.mutableDir = mp
	return mp, nil
}

// prepareWork creates the work dir next to the upper dir (none for an
// ephemeral upper, which brings its own) and refuses a read-only upper.
func (e *engine) prepareWork(s *hierState, b *build, mode, mp string) error {
	if b.upper != nil && !b.upperHost && mode != "ephemeral" && mode != "ephemeral-import" {
		if err := e.realWorkDir(s, b, path.Dir(mp)); err != nil {
			return err
		}
	} else if b.upperHost {
		if err := e.hostWorkDir(s, b); err != nil {
			return err
		}
	}
	if b.upper != nil {
		var sfs unix.Statfs_t
		if err := sysx.Retry(func() error { return unix.Fstatfs(int(b.upper.Fd()), &sfs) }); err == nil && sfs.Flags&unix.ST_RDONLY != 0 {
			return fmt.Errorf("can't use %s as an upperdir as it is read-only: %w", e.display(mp), unix.EROFS)
		}
	}
	return nil
}

// prepareHostLower makes the host hierarchy the bottom layer unless it is
// missing, empty or serves as the upper dir (systemd's
// hierarchy_as_lower_dir).
func prepareHostLower(b *build) error {
	if b.host == nil || b.upperHost {
		return nil
	}
	empty, err := dirIsEmpty(b.host)
	if err != nil {
		return err
	}
	if !empty {
		b.hostLower = true
		if st, err := statFd(b.host); err == nil && unix.Major(st.Dev) != 0 {
			b.backing = st.Dev
		}
	}
	return nil
}

// checkMutableMode enforces systemd's rule that an existing mutable dir
// has the hierarchy's mode (the merged root takes the upper's mode).
func (e *engine) checkMutableMode(mp string, want uint32) error {
	d, err := openDirIn(e.root, mp)
	if err != nil {
		return err
	}
	defer d.Close()
	st, err := statFd(d)
	if err != nil {
		return err
	}
	if st.Mode&0o777 != want {
		return fmt.Errorf("mutable directory %s has mode %04o, ought to have mode %04o: %w", e.display(mp), st.Mode&0o777, want, unix.EINVAL)
	}
	return nil
}

func fchmodPath(f *os.File, mode uint32) error {
	d, err := reopen(f, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := fchmod(int(d.Fd()), mode); err != nil {
		return &os.PathError{Op: "chmod", Path: f.Name(), Err: err}
	}
	return nil
}

// workName picks a work dir name unique to this run:
// ".systemd-<h>-workdir-<16 hex digits>". systemd uses the plain
// ".systemd-<h>-workdir"; a name of our own per run means that no other
// merge, in place or under construction (ours, or systemd's racing us), can
// share our work dir: overlayfs empties the work dir's "work" subdir at
// mount time, under the feet of any other overlay using it. The name
// in use is recorded in work_dir, which systemd's unmerge reads as well.
func workName(h string) string {
	// Not crypto/rand: getrandom(2) blocks until the kernel's CRNG is
	// ready, which in an early initrd without a hardware RNG took 1.4 s
	// under QEMU. The name only has to be unlikely to repeat (a clash is
	// caught by mkdir's EEXIST); math/rand/v2 is seeded from the kernel's
	// AT_RANDOM bytes and never blocks.
	var r [8]byte
	binary.LittleEndian.PutUint64(r[:], rand.Uint64())
	return config.WorkDirName(h) + "-" + hex.EncodeToString(r[:])
}

// isWorkName reports whether name is a work dir name of hierarchy h that
// this tool (workName) or systemd (WorkDirName) creates.
func isWorkName(h, name string) bool {
	base := config.WorkDirName(h)
	if name == base {
		return true
	}
	suf, ok := strings.CutPrefix(name, base+"-")
	if !ok || len(suf) != 16 {
		return false
	}
	_, err := hex.DecodeString(suf)
	return err == nil && strings.ToLower(suf) == suf
}

// hostWorkDir places the work dir next to the hierarchy when the
// hierarchy itself is the upper dir. Under a merge it is created through
// the same detached clone the upper comes from: overlayfs wants upper and
// work on the same mount.
func (e *engine) hostWorkDir(s *hierState, b *build) error {
	var parent *os.File
	var err error
	if b.clone != nil {
		parent, err = reopen(b.clone, unix.O_PATH|unix.O_DIRECTORY)
	} else {
		parent, err = openDirIn(e.root, path.Dir(s.h))
	}
	if err != nil {
		return err
	}
	b.keep(parent)
	return e.makeWorkDir(s, b, parent, path.Dir(s.h))
}

// realWorkDir places the work dir next to a separate upper dir.
func (e *engine) realWorkDir(s *hierState, b *build, parentRel string) error {
	parent, err := openDirIn(e.root, parentRel)
	if err != nil {
		return err
	}
	b.keep(parent)
	return e.makeWorkDir(s, b, parent, parentRel)
}

func (e *engine) makeWorkDir(s *hierState, b *build, parent *os.File, parentRel string) error {
	pst, err := statFd(parent)
	if err != nil {
		return err
	}
	ust, err := statFd(b.upper)
	if err != nil {
		return err
	}
	if pst.Dev != ust.Dev {
		return fmt.Errorf("unable to find a suitable workdir location for upperdir of %s: parent directory of the upperdir is in a different filesystem: %w", s.h, unix.EXDEV)
	}
	pd, err := reopen(parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer pd.Close()
	var name string
	for i := 0; ; i++ {
		name = workName(s.h)
		err = mkdirat(int(pd.Fd()), name, 0o700)
		if err == nil || !errors.Is(err, unix.EEXIST) || i >= 3 {
			break
		}
	}
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: e.display(path.Join(parentRel, name)), Err: err}
	}
	b.workNew = true
	b.workParent, b.workName = parent, name
	w, err := rootfs.OpenIn(parent, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
	if err != nil {
		return err
	}
	b.work = b.keep(w)
	b.workRel = strings.TrimPrefix(path.Join(parentRel, name), "/")
	return nil
}

// ephemeralUpper puts upper and work dir into a private detached tmpfs:
// changes are lost with the merge (systemd uses a tmpfs in its private
// namespace the same way).
func (e *engine) ephemeralUpper(b *build) error {
	fc, err := mount.NewFS("tmpfs", e.cls.Name)
	if err != nil {
		return err
	}
	defer fc.Close()
	if err := fc.SetString("mode", "0700"); err != nil {
		return err
	}
	t, err := fc.Mount(unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return err
	}
	b.keep(t)
	hn := hierName(b.h)
	if err := mkdirat(int(t.Fd()), hn, b.hostMode); err != nil {
		return &os.PathError{Op: "mkdir", Path: "ephemeral upper " + hn, Err: err}
	}
	wn := ".systemd-" + hn + "-workdir"
	if err := mkdirat(int(t.Fd()), wn, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: "ephemeral work " + wn, Err: err}
	}
	u, err := rootfs.OpenIn(t, hn, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	b.upper = b.keep(u) // kept at once: closed by abort if what follows fails
	if err := fchmodPath(u, b.hostMode); err != nil {
		return err
	}
	w, err := rootfs.OpenIn(t, wn, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	b.work = b.keep(w)
	return nil
}

// overlayOptions splits the option string into overlay parameters and
// mount attributes (like systemd's mount_option_mangle, which turns e.g.
// "noatime" into MS_NOATIME before calling mount(2)).
func overlayOptions(s string) (params []string, set, clr uint64) {
	for _, o := range strings.Split(s, ",") {
		switch o {
		case "":
		case "noatime":
			set, clr = set|unix.MOUNT_ATTR_NOATIME, clr|unix.MOUNT_ATTR__ATIME
		case "relatime":
			clr |= unix.MOUNT_ATTR__ATIME
		case "strictatime":
			set, clr = set|unix.MOUNT_ATTR_STRICTATIME, clr|unix.MOUNT_ATTR__ATIME
		case "nodiratime":
			set |= unix.MOUNT_ATTR_NODIRATIME
		case "nosuid":
			set |= unix.MOUNT_ATTR_NOSUID
		case "nodev":
			set |= unix.MOUNT_ATTR_NODEV
		case "noexec":
			set |= unix.MOUNT_ATTR_NOEXEC
		case "suid":
			clr |= unix.MOUNT_ATTR_NOSUID
		case "dev":
			clr |= unix.MOUNT_ATTR_NODEV
		case "exec":
			clr |= unix.MOUNT_ATTR_NOEXEC
		case "ro":
			set |= unix.MOUNT_ATTR_RDONLY
		case "rw":
			clr |= unix.MOUNT_ATTR_RDONLY
		default:
			params = append(params, o)
		}
	}
	return params, set, clr
}

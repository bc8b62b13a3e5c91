package extension

import (
	"errors"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// place attaches the assembled overlay mnt at the hierarchy. When a merge
// of ours covers it, the new overlay goes BENEATH the old one
// (MOVE_MOUNT_BENEATH), then the old one (with its .systemd-<C> bind) is
// detached: the hierarchy shows the old merge, then the new one, never the
// bare directory. Without MOVE_MOUNT_BENEATH (EINVAL on kernels before
// 6.5) or when forced, the old one is detached first and the new one
// mounted after: a short gap, which is logged and reported.
//
// Propagation: the new mount inherits its propagation from where it is
// attached, exactly like systemd's bind of its staging overlay: under a
// shared parent (systemd makes / shared; the golden mountinfo shows
// shared:N) it joins a new peer group and propagates to the parent's
// peers and slaves, so services with slave mount namespaces see the new
// /etc; under a private parent (a test namespace, a private /sysroot) it
// stays private. The detached pieces (meta tmpfs, image mounts, clones)
// are private and invisible until then, so nothing leaks while building.
func (e *engine) place(s *hierState, mnt *os.File) (gap bool, err error) {
	op := e.log.Op("attach %s overlay at %s (replace existing merge: %v)", e.cls.Name, s.display, s.ours)
	gap, err = e.placeInner(s, mnt)
	e.mi = nil
	if err == nil {
		// The mount id survives switch-root (the tree is moved, not
		// copied): comparing it with /proc/self/mountinfo later tells
		// whether anyone replaced this merge since, even when a log line
		// of the replacing tool was lost.
		if id, ierr := sysx.MountID(int(mnt.Fd()), ""); ierr == nil {
			e.log.Infof("%s merge at %s is mount id %d", e.cls.Name, s.display, id)
		}
	}
	return gap, op.Finish(err)
}

// errMergeChanged is returned by place when the hierarchy no longer shows
// the mount the call inspected: another tool (one that does not take our
// lock, such as systemd-<class>) merged, replaced or unmerged it meanwhile.
// Nothing was attached; the call starts over (runRetry).
var errMergeChanged = errors.New("the hierarchy changed since it was inspected (another tool merged or unmerged it)")

// recheckTop re-opens the hierarchy and compares the mount it shows with
// the one inspected (s.top), by mount id: a merge that changed hands since
// must be neither stacked over nor detached.
func (e *engine) recheckTop(s *hierState) error {
	if s.top == nil {
		return nil
	}
	now, err := openDirIn(e.root, s.h)
	if err != nil {
		return fmt.Errorf("%s: %w (%v)", s.display, errMergeChanged, err)
	}
	defer now.Close()
	a, err := sysx.MountID(int(s.top.Fd()), "")
	if err != nil {
		return &os.PathError{Op: "statx", Path: s.display, Err: err}
	}
	b, err := sysx.MountID(int(now.Fd()), "")
	if err != nil {
		return &os.PathError{Op: "statx", Path: s.display, Err: err}
	}
	if a != b {
		return fmt.Errorf("%s: %w (mount id %d, inspected %d)", s.display, errMergeChanged, b, a)
	}
	return nil
}

func (e *engine) placeInner(s *hierState, mnt *os.File) (bool, error) {
	if err := e.recheckTop(s); err != nil {
		return false, err
	}
	if !s.ours {
		target := s.top
		if target == nil {
			// systemd creates a missing hierarchy (mkdir_p 0755).
			d, err := e.mkdirAll(s.h)
			if err != nil {
				return false, err
			}
			defer d.Close()
			target = d
		}
		return false, mount.Attach(mnt, target, false)
	}
	subs, err := e.collectSubmounts(s)
	if err != nil {
		return false, err
	}
	defer closeSubmounts(subs)
	if !e.noBeneath() {
		err := mount.Attach(mnt, s.top, true)
		if err == nil {
			// The new merge is attached (covered by the old one): give it
			// the old one's sub-mounts before the old one goes.
			if serr := e.attachSubmounts(mnt, s.display, subs); serr != nil {
				e.log.Warnf("some sub-mounts of %s were not kept: %v", s.display, serr)
			}
			if uerr := mount.UnmountFd(s.top, unix.MNT_DETACH); uerr != nil {
				// The new merge is in place below; the old one still
				// covers it. Report: the call failed to replace.
				return false, fmt.Errorf("new merge mounted beneath %s but the old one could not be detached: %w", s.display, uerr)
			}
			return false, nil
		}
		if !errors.Is(err, mount.ErrBeneathUnsupported) && !errors.Is(err, unix.EINVAL) {
			return false, err
		}
		e.log.Warnf("MOVE_MOUNT_BENEATH not usable at %s (%v); falling back to unmount-then-mount", s.display, err)
	}
	e.log.Warnf("replacing the merge at %s with a gap: the old merge is unmounted before the new one is mounted", s.display)
	if serr := e.attachSubmounts(mnt, s.display, subs); serr != nil {
		e.log.Warnf("some sub-mounts of %s were not kept: %v", s.display, serr)
	}
	if err := mount.UnmountFd(s.top, unix.MNT_DETACH); err != nil {
		return false, err
	}
	target, err := openDirIn(e.root, s.h)
	if err != nil {
		return true, fmt.Errorf("%s left unmerged: %w", s.display, err)
	}
	defer target.Close()
	if err := mount.Attach(mnt, target, false); err != nil {
		return true, fmt.Errorf("%s left unmerged after removing the old merge: %w", s.display, err)
	}
	return true, nil
}

// cleanOldWork removes the work dir of a replaced merge when the new merge
// uses another one (systemd's unmerge removes it the same way).
func (e *engine) cleanOldWork(old, cur string) {
	if old == "" || old == cur {
		return
	}
	op := e.log.Op("remove old work dir %s", e.display(old))
	op.Finish(e.rfs.RemoveAll(path.Clean("/" + old)))
}

// sweepWork removes per-run work dirs of h (workName's suffixed names) that
// the merge in place does not use (keep, root-relative; "" after an
// unmerge): left behind by a crash, a kill or a failed call. Only called
// under the hierarchy lock, so no call of ours is building with one;
// systemd only ever uses the plain name, which is left alone.
func (e *engine) sweepWork(h, keep string) {
	keep = path.Clean("/" + keep)
	dirs := []string{path.Dir(path.Clean(h)), path.Dir(mutablePath(h))}
	if mp, ok, err := e.resolveMutable(h); err == nil && ok {
		dirs = append(dirs, path.Dir(path.Clean("/"+mp)))
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			continue
		}
		seen[d] = true
		ents, err := e.rfs.ReadDir(d)
		if err != nil {
			continue
		}
		for _, ent := range ents {
			n := ent.Name()
			p := path.Join(d, n)
			if n == WorkDirName(h) || !isWorkName(h, n) || !ent.IsDir() || p == keep {
				continue
			}
			op := e.log.Op("remove stale work dir %s", e.display(p))
			op.Finish(e.rfs.RemoveAll(p))
		}
	}
}

package extension

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// place attaches the assembled overlay mnt at the hierarchy. When a merge
// of ours covers it, the new overlay goes BENEATH the old one
// (MOVE_MOUNT_BENEATH), then the old one (with its .systemd-<C> bind) is
// detached: the hierarchy shows the old merge, then the new one, never the
// bare directory. Only when the kernel lacks MOVE_MOUNT_BENEATH (the
// feature table says so, or the attach reports mount.ErrBeneathUnsupported;
// kernels before 6.5) or when forced, the old one is detached first and
// the new one mounted after: a short gap, which is logged and counted. Any
// other refusal of the beneath attach fails the call with the old merge
// untouched. protect makes the read-only bind of .systemd-<C> once mnt is
// attached (kernels without mount.Features.DetachedTree). old is the
// detached clone of the merge in place (nil for a fresh merge), mounted
// back when the gap path cannot attach the new merge.
//
// Propagation: the new mount inherits its propagation from where it is
// attached, exactly like systemd's bind of its staging overlay: under a
// shared parent (systemd makes / shared; the golden mountinfo shows
// shared:N) it joins a new peer group and propagates to the parent's
// peers and slaves, so services with slave mount namespaces see the new
// /etc; under a private parent (a test namespace, a private /sysroot) it
// stays private. The detached pieces (meta tmpfs, image mounts, clones)
// are private and invisible until then, so nothing leaks while building.
func (e *engine) place(s *hierState, mnt *os.File, protect bool, old *os.File) (gap bool, err error) {
	op := e.log.Op("attach %s overlay at %s (replace existing merge: %v)", e.cls.Name, s.display, s.ours)
	gap, err = e.placeInner(s, mnt, protect, old)
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

// protectAttached makes the deferred read-only bind of .systemd-<C> on the
// now attached mnt.
func (e *engine) protectAttached(mnt *os.File, protect bool) error {
	if !protect {
		return nil
	}
	if err := e.protectMeta(mnt); err != nil {
		return fmt.Errorf("protect %s metadata: %w", e.cls.DotDir, err)
	}
	return nil
}

// changedOr returns errMergeChanged (wrapping err) when the hierarchy no
// longer looks as inspected: another mount on top, or the same mount now
// recognised differently (systemd writes its metadata around the move of
// its overlay into place). Staging that failed on such a moving target is
// started over rather than reported. Otherwise it returns err.
func (e *engine) changedOr(s *hierState, err error) error {
	now, ierr := e.inspect(s.h)
	if ierr != nil {
		return err
	}
	defer now.close()
	var a, b uint64
	if s.top != nil {
		a, _ = sysx.MountID(int(s.top.Fd()), "")
	}
	if now.top != nil {
		b, _ = sysx.MountID(int(now.top.Fd()), "")
	}
	if a != b || s.ours != now.ours || !bytes.Equal(s.origin, now.origin) {
		return fmt.Errorf("%s: %w: %w", s.display, errMergeChanged, err)
	}
	// The work dir check opens the hierarchy after inspecting it: a merge
	// another tool attached in between and removed again before this
	// re-check (systemd-confext takes no lock and unmerges when its own
	// merge fails) shows up only as the hierarchy on another file system.
	// Starting over settles it; a layout that really has the upper dir on
	// another file system fails the same way every time and the error is
	// returned after the retries.
	if errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%s: %w: %w", s.display, errMergeChanged, err)
	}
	return err
}

func (e *engine) placeInner(s *hierState, mnt *os.File, protect bool, old *os.File) (bool, error) {
	if err := e.recheckTop(s); err != nil {
		return false, err
	}
	if !s.ours {
		return false, e.placeFresh(s, mnt, protect)
	}
	subs, err := e.collectSubmounts(s)
	if err != nil {
		return false, err
	}
	defer closeSubmounts(subs)
	if !e.noBeneath() && e.kern.Beneath {
		err := attachBeneath(mnt, s.top)
		if err == nil {
			return false, e.finishBeneath(s, mnt, subs, protect)
		}
		if !errors.Is(err, mount.ErrBeneathUnsupported) {
			// A kernel that has MOVE_MOUNT_BENEATH refused this attach
			// (the top mount changed, a race, ...): nothing was changed,
			// and opening a gap for it would only make things worse.
			return false, e.changedOr(s, fmt.Errorf("mount the new merge beneath %s (the merge in place is unchanged): %w", s.display, err))
		}
		e.log.Warnf("MOVE_MOUNT_BENEATH not supported at %s (%v); falling back to unmount-then-mount", s.display, err)
	} else if !e.kern.Beneath {
		e.log.Warnf("this kernel (%s) has no MOVE_MOUNT_BENEATH (Linux >= 6.5)", e.kern.Release)
	}
	return true, e.replaceWithGap(s, mnt, subs, protect, old)
}

// placeFresh attaches mnt where no merge of ours is.
func (e *engine) placeFresh(s *hierState, mnt *os.File, protect bool) error {
	target := s.top
	if target == nil {
		// systemd creates a missing hierarchy (mkdir_p 0755).
		d, err := e.mkdirAll(s.h)
		if err != nil {
			return err
		}
		defer d.Close()
		target = d
	}
	if err := mount.Attach(mnt, target, false); err != nil {
		return err
	}
	if err := e.protectAttached(mnt, protect); err != nil {
		// Nothing was there before: take the new merge away again.
		if uerr := mount.UnmountFd(mnt, unix.MNT_DETACH); uerr != nil {
			return fmt.Errorf("%w; and removing the new merge from %s failed: %w", err, s.display, uerr)
		}
		return err
	}
	return nil
}

// errLeftUnmerged marks a gap replacement that could neither attach the
// new merge nor put the old one back: the hierarchy shows its bare
// directory.
var errLeftUnmerged = errors.New("left unmerged")

// replaceWithGap is the replacement without MOVE_MOUNT_BENEATH: the old
// merge is detached, then the new one attached. If the attach fails, the
// clone old of the old merge is attached instead (issue 14 item 7: an
// EBUSY there left /etc as the bare upper dir), so the hierarchy shows the
// old merge again; errLeftUnmerged only when that fails too.
func (e *engine) replaceWithGap(s *hierState, mnt *os.File, subs []submount, protect bool, old *os.File) error {
	e.log.Warnf("replacing the merge at %s with a gap: the old merge is unmounted before the new one is mounted", s.display)
	if err := mount.UnmountFd(s.top, unix.MNT_DETACH); err != nil {
		return err
	}
	target, err := openDirIn(e.root, s.h)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", s.display, errLeftUnmerged, err)
	}
	defer target.Close()
	if err := mount.Attach(mnt, target, false); err != nil {
		return e.putBack(s, target, old, fmt.Errorf("attach the new merge at %s after removing the old one: %w", s.display, err))
	}
	// Sub-mounts go onto the attached merge: before Linux 6.15 nothing
	// can be attached onto a detached mount.
	if serr := e.attachSubmounts(mnt, s.display, subs); serr != nil {
		e.log.Warnf("some sub-mounts of %s were not kept: %v", s.display, serr)
	}
	if err := e.protectAttached(mnt, protect); err != nil {
		e.log.Warnf("%s merged, but its metadata is not protected: %v", s.display, err)
	}
	return nil
}

// putBack attaches old, the clone of the merge a gap replacement removed,
// at target after the new merge could not be attached (err).
func (e *engine) putBack(s *hierState, target, old *os.File, err error) error {
	if old == nil {
		return fmt.Errorf("%w; %s %w (no copy of the old merge)", err, s.display, errLeftUnmerged)
	}
	op := e.log.Op("put the old merge back at %s", s.display)
	if perr := op.Finish(mount.Attach(old, target, false)); perr != nil {
		return fmt.Errorf("%w; %s %w: putting the old merge back failed: %w", err, s.display, errLeftUnmerged, perr)
	}
	e.mi = nil
	return fmt.Errorf("%w (the old merge was put back)", err)
}

// restoreOld undoes the replacement of p (placed) after a later step of the
// call failed: the clone of the old merge goes beneath the new merge, then
// the new one is detached, so the hierarchy shows the new merge, then the
// old one, never the bare directory. Without MOVE_MOUNT_BENEATH (or with
// it forced off) the new merge is detached first and the clone attached
// after: a gap, as in the replacement itself.
func (e *engine) restoreOld(p *hierPlan) error {
	s := p.s
	if p.old == nil {
		return errors.New("no copy of the old merge")
	}
	op := e.log.Op("restore the old merge at %s (another hierarchy of this call failed)", s.display)
	err := func() error {
		if !e.noBeneath() && e.kern.Beneath {
			err := attachBeneath(p.old, p.mnt)
			if err == nil {
				return detachOld(p.mnt)
			}
			if !errors.Is(err, mount.ErrBeneathUnsupported) {
				return err
			}
		}
		if err := mount.UnmountFd(p.mnt, unix.MNT_DETACH); err != nil {
			return err
		}
		target, err := openDirIn(e.root, s.h)
		if err != nil {
			return err
		}
		defer target.Close()
		return mount.Attach(p.old, target, false)
	}()
	return op.Finish(err)
}

// finishBeneath completes a replacement after the new merge mnt was
// attached beneath the old one: sub-mounts and the metadata bind go onto
// the new merge while the old one still covers it, then the old one is
// detached.
//
// After MOVE_MOUNT_BENEATH the old merge sits on the root of the new one
// (it is its child), so the new one cannot be taken away alone: an
// unmount through its fd reaches the old one on top, and a detach of the
// new tree would take both. So when the old one is not detached, the
// state is re-read by mount id: if the old merge is gone meanwhile (another
// caller detached it), the new one is in place alone; else its detach is
// retried once. Only if that fails too are two merges left stacked, and
// the error says so (unmerge clears it).
func (e *engine) finishBeneath(s *hierState, mnt *os.File, subs []submount, protect bool) error {
	if serr := e.attachSubmounts(mnt, s.display, subs); serr != nil {
		e.log.Warnf("some sub-mounts of %s were not kept: %v", s.display, serr)
	}
	if err := e.protectAttached(mnt, protect); err != nil {
		// The old merge still covers the new one: retract by detaching
		// the old one would expose an unprotected merge, so keep going
		// and only report.
		e.log.Warnf("%s: %v", s.display, err)
	}
	uerr := detachOld(s.top)
	if uerr == nil {
		return nil
	}
	e.log.Warnf("new merge mounted beneath %s but the old one could not be detached: %v", s.display, uerr)
	oldID, ierr := sysx.MountID(int(s.top.Fd()), "")
	if ierr == nil {
		e.mi = nil
		infos, rerr := e.mountinfo()
		if rerr == nil && !hasMountID(infos, oldID) {
			e.log.Noticef("the old merge at %s is no longer mounted: the new merge is in place alone", s.display)
			return nil
		}
	}
	if rerr := detachOld(s.top); rerr == nil {
		e.log.Noticef("second detach of the old merge at %s succeeded", s.display)
		return nil
	}
	return fmt.Errorf("new merge mounted beneath %s but the old one could not be detached (two merges are stacked there; unmerge clears them): %w", s.display, uerr)
}

func hasMountID(infos []mount.Info, id uint64) bool {
	for _, in := range infos {
		if uint64(in.ID) == id {
			return true
		}
	}
	return false
}

// Seams for the tests of this package only (no other package can set
// them, and nothing in a production build does): the beneath attach and
// the detach of the old merge.
var (
	attachBeneath = func(mnt, top *os.File) error { return mount.Attach(mnt, top, true) }
	detachOld     = func(top *os.File) error { return mount.UnmountFd(top, unix.MNT_DETACH) }
)

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
			if n == config.WorkDirName(h) || !isWorkName(h, n) || !ent.IsDir() || p == keep {
				continue
			}
			op := e.log.Op("remove stale work dir %s", e.display(p))
			op.Finish(e.rfs.RemoveAll(p))
		}
	}
}

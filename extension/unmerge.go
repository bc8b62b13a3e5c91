package extension

import (
	"context"
	"path"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/mount"
)

// Unmerge removes every merge of the class (ours or systemd's) from the
// hierarchies, as systemd's unmerge does: while the hierarchy is "ours",
// detach it (with its .systemd-<C> bind) and remove its work dir. A
// hierarchy that is not a merge is left alone.
func Unmerge(ctx context.Context, opt Options) (*Result, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	locks, err := e.lockHierarchies(ctx)
	if err != nil {
		return nil, err
	}
	defer locks.release()
	res := &Result{}
	return res, e.unmergeAll(ctx, res)
}

// unmergeAll unmerges every hierarchy of the class, recording in res which
// ones carried a merge; Unmerge and a refresh that finds no image left
// share it.
func (e *engine) unmergeAll(ctx context.Context, res *Result) error {
	for _, h := range e.hiers {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := e.unmergeHierarchy(h)
		if err != nil {
			return err
		}
		if n > 0 {
			res.Unmerged = true
			res.Hierarchies = append(res.Hierarchies, e.display(h))
		}
	}
	return nil
}

// unmergeHierarchy unmerges h until it is no longer ours; it returns how
// many merges it removed.
func (e *engine) unmergeHierarchy(h string) (int, error) {
	n := 0
	for i := 0; i < 64; i++ {
		s, err := e.inspect(h)
		if err != nil {
			return n, err
		}
		if !s.ours {
			s.close()
			// Also with nothing merged: an unmerge killed before it
			// removed the work dir leaves it for the next one (found by
			// the fault-injection test).
			e.sweepWork(h, "")
			return n, nil
		}
		subs, err := e.collectSubmounts(s)
		if err != nil {
			s.close()
			return n, err
		}
		op := e.log.Op("unmount %s merge at %s", e.cls.Name, s.display)
		err = op.Finish(mount.UnmountFd(s.top, unix.MNT_DETACH))
		e.mi = nil
		s.close()
		if err != nil {
			closeSubmounts(subs)
			return n, err
		}
		// Put the merge's sub-mounts back on the bare hierarchy, as
		// systemd does.
		if len(subs) > 0 {
			if bare, err := openDirIn(e.root, h); err == nil {
				if serr := e.attachSubmounts(bare, s.display, subs); serr != nil {
					e.log.Warnf("some sub-mounts of %s were not kept: %v", s.display, serr)
				}
				bare.Close()
			}
			closeSubmounts(subs)
		}
		if s.oldWork != "" {
			op := e.log.Op("remove work dir %s", e.display(s.oldWork))
			if err := op.Finish(e.rfs.RemoveAll(path.Clean("/" + s.oldWork))); err != nil {
				return n, err
			}
		}
		e.infof("Unmerged '%s'.", s.display)
		n++
	}
	return n, nil
}

package extension

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/mount"
)

// hierPlan is one hierarchy's part of a merge or refresh, staged before
// anything is attached.
type hierPlan struct {
	s *hierState
	// unmerge: mode "no" and no image has this hierarchy, so the merge in
	// place (if any) is removed, as systemd does.
	unmerge bool
	b       *build
	mnt     *os.File // the assembled detached overlay
	placed  bool
	// old is a detached recursive clone of the merge in place (a
	// replacement), taken before anything is attached: what is mounted
	// back if this hierarchy's attach or a later hierarchy's fails.
	old *os.File
}

// discard releases what the plan holds; a build that was not placed also
// removes the work dir it created (abort works on the build's open fds,
// so it must come before close).
func (p *hierPlan) discard() {
	if p.old != nil {
		p.old.Close()
		p.old = nil
	}
	if p.mnt != nil {
		p.mnt.Close()
		p.mnt = nil
	}
	if p.b != nil {
		if p.placed {
			p.b.close()
		} else {
			p.b.abort()
		}
		p.b = nil
	}
}

// stageHierarchy builds and assembles the new overlay of one hierarchy,
// detached. Nothing visible changes; on failure the plan is discarded and
// the error says what failed.
func (e *engine) stageHierarchy(s *hierState, mode string, cands []*candidate, names []string, origin []byte) (*hierPlan, error) {
	var layers []*os.File
	defer func() {
		for _, l := range layers {
			l.Close()
		}
	}()
	for i := len(cands) - 1; i >= 0; i-- {
		c := cands[i]
		if !c.accepted {
			continue
		}
		l, err := c.opened.layer(s.h)
		if err != nil {
			return nil, &imageError{c.img.Name, e.display(c.img.Path), "cannot open hierarchy " + s.h + " in image", err}
		}
		if l != nil {
			layers = append(layers, l)
		}
	}
	p := &hierPlan{s: s}
	if len(layers) == 0 && mode == "no" {
		p.unmerge = true
		return p, nil
	}
	b, err := e.prepare(s, mode)
	if err != nil {
		return nil, e.changedOr(s, fmt.Errorf("prepare merge of %s: %w", s.display, err))
	}
	p.b = b
	mnt, err := e.assemble(b, layers, names, origin)
	if err != nil {
		p.discard()
		return nil, e.changedOr(s, fmt.Errorf("assemble merge of %s (the merge in place, if any, is unchanged): %w", s.display, err))
	}
	p.mnt = mnt
	return p, nil
}

// applyPlans attaches the staged overlays, all-or-nothing: every
// hierarchy was staged (decided, built, assembled) before this runs, so
// the usual failures (an unusable mutable dir, a bad image) change
// nothing, and a detached clone of every merge to be replaced is taken
// before the first attach. The attaches run fresh merges first,
// replacements after and removals last. If one fails, the hierarchies
// this call changed are put back (rollback): a fresh merge is detached
// again, a replaced merge's clone is mounted back (beneath the new merge,
// which is then detached), and the work dirs of the new merges go; the
// work dirs of the replaced merges are removed only once every hierarchy
// is in place.
func (e *engine) applyPlans(plans []*hierPlan, res *Result) error {
	order := applyOrder(plans)
	if err := e.cloneOld(order); err != nil {
		return err
	}
	for i, p := range order {
		if err := e.applyPlan(p, res); err != nil {
			return e.rollback(order[:i+1], err)
		}
	}
	for _, p := range order {
		e.finishPlan(p)
	}
	return nil
}

// applyOrder sorts the plans: fresh merges, replacements, removals.
func applyOrder(plans []*hierPlan) []*hierPlan {
	order := make([]*hierPlan, 0, len(plans))
	for _, pass := range []func(*hierPlan) bool{
		func(p *hierPlan) bool { return !p.unmerge && !p.s.ours },
		func(p *hierPlan) bool { return !p.unmerge && p.s.ours },
		func(p *hierPlan) bool { return p.unmerge },
	} {
		for _, p := range plans {
			if pass(p) {
				order = append(order, p)
			}
		}
	}
	return order
}

// cloneOld takes the detached clone of every merge to be replaced. A clone
// that cannot be taken fails the call before anything is attached (without
// it a failure later could not be undone), or starts it over when the
// hierarchy changed since it was inspected.
func (e *engine) cloneOld(order []*hierPlan) error {
	for _, p := range order {
		if p.unmerge || !p.s.ours {
			continue
		}
		op := e.log.Op("keep a detached copy of the merge at %s (put back if the refresh fails)", p.s.display)
		old, err := mount.BindDetached(p.s.top, true)
		if op.Finish(err) != nil {
			// EINVAL when the merge inspected was detached meanwhile
			// (another tool, such as systemd-<class>, replaced or unmerged
			// it): then the call starts over.
			return e.changedOr(p.s, fmt.Errorf("%s: cannot keep a copy of the merge in place to restore it on failure (nothing changed): %w", p.s.display, err))
		}
		p.old = old
	}
	return nil
}

// applyPlan attaches (or removes) one hierarchy's merge.
func (e *engine) applyPlan(p *hierPlan, res *Result) error {
	s := p.s
	if p.unmerge {
		if !s.ours {
			return nil
		}
		n, err := e.unmergeHierarchy(s.h)
		if err == nil && n > 0 {
			res.Replaced = true
		}
		return err
	}
	gap, err := e.place(s, p.mnt, p.b.protectLater, p.old)
	if err != nil {
		return err
	}
	p.placed = true
	res.Hierarchies = append(res.Hierarchies, s.display)
	if gap {
		res.Gap = true
		res.Gaps++
	}
	if s.ours {
		res.Replaced = true
		e.infof("Unmerged '%s'.", s.display)
	}
	e.infof("Merged extensions into '%s'.", s.display)
	return nil
}

// finishPlan completes a placed plan once every hierarchy is in place:
// the meta layer goes to Records, the replaced merge's clone and work dir
// go, stale work dirs are swept.
func (e *engine) finishPlan(p *hierPlan) {
	if !p.placed {
		return
	}
	s := p.s
	if p.b.metaDot != nil {
		e.opt.Records.put(e.rootPath, e.cls.Name, s.h, p.b.metaDot)
		p.b.metaDot = nil
	}
	if p.old != nil {
		p.old.Close()
		p.old = nil
	}
	if s.ours {
		e.cleanOldWork(s.oldWork, p.b.workRel)
	}
	if p.b.workRel != "" {
		e.sweepWork(s.h, p.b.workRel)
	}
}

// rollback undoes, newest first, the hierarchies of done (the plans
// attached so far, the failed one last) after err ended applyPlans: fresh
// merges are detached, replaced merges restored from their clone
// (restoreOld). A plan whose new merge is gone again is marked not placed,
// so discard removes its work dir. The error names every hierarchy that
// could not be put back.
func (e *engine) rollback(done []*hierPlan, err error) error {
	var kept []string
	if errors.Is(err, errLeftUnmerged) {
		kept = append(kept, done[len(done)-1].s.display+" (left unmerged)")
	}
	for i := len(done) - 1; i >= 0; i-- {
		p := done[i]
		if !p.placed {
			continue
		}
		if p.s.ours {
			if rerr := e.restoreOld(p); rerr != nil {
				e.log.Errorf("%s keeps the new merge: %v", p.s.display, rerr)
				kept = append(kept, p.s.display+" (could not be restored)")
				continue
			}
		} else {
			op := e.log.Op("undo the merge at %s (another hierarchy of this call failed)", p.s.display)
			if uerr := op.Finish(mount.UnmountFd(p.mnt, unix.MNT_DETACH)); uerr != nil {
				e.log.Errorf("%s stays merged: %v", p.s.display, uerr)
				kept = append(kept, p.s.display+" (could not be undone)")
				continue
			}
		}
		e.mi = nil
		p.placed = false // discard now removes its work dir
	}
	if len(kept) > 0 {
		return fmt.Errorf("%w (not put back: %s)", err, strings.Join(kept, ", "))
	}
	return err
}

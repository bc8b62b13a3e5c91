package extension

import (
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
}

// discard releases what the plan holds; a build that was not placed also
// removes the work dir it created (abort works on the build's open fds,
// so it must come before close).
func (p *hierPlan) discard() {
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

// applyPlans attaches the staged overlays. All-or-nothing as far as the
// kernel lets us: every hierarchy was staged (decided, built, assembled)
// before this runs, so the usual failures (an unusable mutable dir, a bad
// image) change nothing. The attaches then run fresh merges first, which
// can be undone, replacements after (an atomic replacement detaches the old
// merge, which cannot be put back) and removals last. If an attach fails,
// the fresh merges this call attached are detached again and their work
// dirs removed; replacements already made stay (each hierarchy consistent
// on its own) and the error names them.
func (e *engine) applyPlans(plans []*hierPlan, res *Result) error {
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
	var replaced []string
	for _, p := range order {
		s := p.s
		if p.unmerge {
			if !s.ours {
				continue
			}
			n, err := e.unmergeHierarchy(s.h)
			if err != nil {
				return e.rollback(order, replaced, err)
			}
			if n > 0 {
				res.Replaced = true
			}
			continue
		}
		gap, err := e.place(s, p.mnt, p.b.protectLater)
		if err != nil {
			if gap {
				// The old merge is gone and the new one is not attached:
				// nothing of this hierarchy can be undone any more.
				replaced = append(replaced, s.display+" (left unmerged)")
			}
			return e.rollback(order, replaced, err)
		}
		p.placed = true
		if p.b.metaDot != nil {
			e.opt.Records.put(e.rootPath, e.cls.Name, s.h, p.b.metaDot)
			p.b.metaDot = nil
		}
		res.Hierarchies = append(res.Hierarchies, s.display)
		if gap {
			res.Gap = true
			res.Gaps++
		}
		if s.ours {
			replaced = append(replaced, s.display)
			res.Replaced = true
			e.infof("Unmerged '%s'.", s.display)
			e.cleanOldWork(s.oldWork, p.b.workRel)
		}
		e.infof("Merged extensions into '%s'.", s.display)
		if p.b.workRel != "" {
			e.sweepWork(s.h, p.b.workRel)
		}
	}
	return nil
}

// rollback detaches the fresh merges (no merge was in place) that this
// call attached, after err ended applyPlans, and removes their work dirs.
func (e *engine) rollback(order []*hierPlan, replaced []string, err error) error {
	for i := len(order) - 1; i >= 0; i-- {
		p := order[i]
		if !p.placed || p.s.ours {
			continue
		}
		op := e.log.Op("undo the merge at %s (another hierarchy of this call failed)", p.s.display)
		if uerr := op.Finish(mount.UnmountFd(p.mnt, unix.MNT_DETACH)); uerr != nil {
			e.log.Errorf("%s stays merged: %v", p.s.display, uerr)
			replaced = append(replaced, p.s.display+" (could not be undone)")
			continue
		}
		e.mi = nil
		p.placed = false // discard now removes its work dir
	}
	if len(replaced) > 0 {
		return fmt.Errorf("%w (already replaced, kept: %s)", err, strings.Join(replaced, ", "))
	}
	return err
}

package extension

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/vpick"
)

// Merge merges the class's images into its hierarchies, like
// `systemd-<class> merge`: it fails if a hierarchy already carries a merge.
func Merge(ctx context.Context, opt Options) (*Result, error) { return runRetry(ctx, opt, false) }

// Refresh brings the merge in line with the installed images, like
// `systemd-<class> refresh`: it skips when the origin record is unchanged
// (and, beyond systemd, no directory image was edited in place), replaces
// an existing merge atomically otherwise, merges if nothing is merged, and
// unmerges when mode is "no" and no image is left.
func Refresh(ctx context.Context, opt Options) (*Result, error) { return runRetry(ctx, opt, true) }

// changedRetries bounds how often a call starts over because the merge it
// inspected was replaced by someone not taking our lock (systemd-<class>)
// before it could attach its own.
const changedRetries = 8

// changedBackoff is the pause before the first start-over; it doubles
// each time (8 start-overs: 2.55 s of pauses at most). systemd-<class>
// takes no lock, and its refresh passes through states in which /etc
// cannot be merged over (its new overlay attached before the old one is
// gone) for as long as it runs, 100 ms here and more under load: starting
// over at once can meet the same state every time (TestConcurrentWithSystemd
// failed so, six immediate start-overs inside one systemd refresh).
const changedBackoff = 10 * time.Millisecond

// runRetry is run, started over (lock, inspection, decision) when the
// re-check right before attaching found the hierarchy changed by another
// tool; nothing was attached then.
func runRetry(ctx context.Context, opt Options, refresh bool) (*Result, error) {
	for i := 0; ; i++ {
		res, err := run(ctx, opt, refresh)
		if !errors.Is(err, errMergeChanged) || i >= changedRetries {
			return res, err
		}
		pause := changedBackoff << i
		if opt.Log != nil {
			opt.Log.Warnf("%v; starting over in %v", err, pause)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, err
		case <-t.C:
		}
	}
}

// Merged reports whether any hierarchy of the class carries a merge (ours
// or systemd's) in opt.Root.
func Merged(opt Options) (bool, error) {
	e, err := newEngine(opt)
	if err != nil {
		return false, err
	}
	defer e.close()
	for _, h := range e.hiers {
		s, err := e.inspect(h)
		if err != nil {
			return false, err
		}
		s.close()
		if s.ours {
			return true, nil
		}
	}
	return false, nil
}

func run(ctx context.Context, opt Options, refresh bool) (*Result, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	// Read-decide-modify under the hierarchy locks (lock.go). A call that
	// waited and finds the merge replaced meanwhile by the holder skips
	// when that merge is what it would make, even with AlwaysRefresh: the
	// refresh it was asked for has just happened.
	before := e.topMountIDs()
	locks, err := e.lockHierarchies(ctx)
	if err != nil {
		return nil, err
	}
	defer locks.release()
	alwaysRefresh := opt.AlwaysRefresh
	if locks.waited && alwaysRefresh && !sameIDs(before, e.topMountIDs()) {
		e.log.Infof("the merge was replaced while this call waited for the lock: refreshing only if it differs")
		alwaysRefresh = false
	}
	return e.runLocked(ctx, refresh, alwaysRefresh)
}

// call is one read-decide-modify of run, with the hierarchy locks held:
// what was read (the hierarchies, the images and their verdicts, the last
// run's state) and what was decided, passed from step to step.
type call struct {
	refresh, always bool
	mode            string
	host            release.Host
	scope           string
	states          []*hierState
	old             []byte // origin record of the merge in place (nil: none)
	oldFrom         string // the file old was read from, for messages
	cands           []*candidate
	doc             *record.Origin // the origin record without the images
	hh              string         // record.HostReleaseHash
	inputs          string         // verdictInputs
	prev            *record.State
	res             *Result
}

// close releases the hierarchies' and the images' fds.
func (c *call) close() {
	closeStates(c.states)
	for _, cd := range c.cands {
		if cd.opened != nil {
			cd.opened.Close()
		}
	}
}

// runLocked is run's read-decide-modify, with the hierarchy locks held:
// inspect the hierarchies, identify the images, skip when nothing that
// can change a verdict or the merge changed, else check every image and
// skip, keep, unmerge or replace.
func (e *engine) runLocked(ctx context.Context, refresh, alwaysRefresh bool) (*Result, error) {
	c := &call{refresh: refresh, always: alwaysRefresh, res: &Result{}}
	defer c.close()
	pre := e.takePrepared()
	defer pre.close()
	if err := e.inspectForRun(c); err != nil {
		return nil, err
	}
	if err := e.identifyImages(c); err != nil {
		return nil, err
	}
	if done, err := e.fastSkip(c); done || err != nil {
		return c.res, err
	}
	pre.match(e, c)
	for _, cd := range c.cands {
		if err := ctx.Err(); err != nil {
			return c.res, err
		}
		if pre.adopt(cd) {
			continue
		}
		if err := e.check(cd, c.host, c.scope); err != nil {
			return c.res, err
		}
	}
	pre.report(e)
	if e.skipAfterCheck(c) || e.keepForTransient(c) {
		return c.res, nil
	}
	res := c.res
	for _, cd := range c.cands {
		if !cd.accepted {
			e.skip(res, cd.img, cd.reason)
		}
	}
	res.Merged = acceptedNames(c.cands)
	if len(res.Merged) == 0 && c.mode == "no" {
		return res, e.noImages(ctx, c)
	}
	e.logUsing(c)
	if err := e.stageAndApply(c); err != nil {
		return res, err
	}
	e.saveState(e.newState(c.cands, c.hh, c.inputs))
	return res, nil
}

// inspectForRun reads the mutable mode, the host release and the
// hierarchies: stale stacked merges and unused work dirs of ours go, a
// merge refuses a hierarchy that is merged already, and the origin record
// a refresh compares with is picked.
func (e *engine) inspectForRun(c *call) error {
	var err error
	if c.mode, err = e.mutableMode(); err != nil {
		return err
	}
	if c.host, c.scope, err = e.hostRelease(); err != nil {
		return err
	}
	c.states, err = e.inspectAll()
	if err != nil {
		return err
	}
	if c.states, err = e.unstack(c.states); err != nil {
		return err
	}
	// Work dirs of ours that no merge uses (a run killed after creating
	// one, or after a replacement but before removing the old one) go
	// now, also when this refresh turns out to skip (found by the
	// fault-injection test).
	for _, s := range c.states {
		keep := ""
		if s.ours {
			keep = s.oldWork
		}
		e.sweepWork(s.h, keep)
	}
	for _, s := range c.states {
		if s.ours && !c.refresh {
			return &AlreadyMergedError{Hierarchy: s.h}
		}
	}
	if s := firstOrigin(c.states); s != nil {
		c.old, c.oldFrom = s.origin, e.display(s.h)+"/"+e.cls.DotDir+"/origin"
	}
	return nil
}

// identifyImages resolves the image policy (once, before any image is
// opened: a configuration that cannot be read fails the call), discovers
// the images in name order and takes each one's identity; it also reads
// what the skip decisions compare with: the origin base, the host release
// and verdict inputs, and the last run's state.
func (e *engine) identifyImages(c *call) error {
	if _, _, err := e.imagePolicy(); err != nil {
		return err
	}
	imgs, err := e.discover()
	if err != nil {
		return fmt.Errorf("discover %s images: %w", e.cls.Name, err)
	}
	sort.Slice(imgs, func(i, j int) bool { return vpick.StrverscmpImproved(imgs[i].Name, imgs[j].Name) < 0 })
	c.cands = make([]*candidate, 0, len(imgs))
	for _, img := range imgs {
		id, err := record.ImageIdentity(e.rfs, img, e.identityOptions())
		if err != nil {
			if e.essential(img.Name) {
				return &imageError{img.Name, e.display(img.Path), "essential image cannot be identified", err}
			}
			e.skip(c.res, img, fmt.Sprintf("cannot identify image: %v", err))
			continue
		}
		c.cands = append(c.cands, &candidate{img: img, id: id})
	}
	if c.doc, err = e.originBase(c.mode); err != nil {
		return err
	}
	c.hh = record.HostReleaseHash(c.host, c.scope)
	if c.inputs, err = e.verdictInputs(c.mode); err != nil {
		return err
	}
	c.prev = e.loadState()
	return nil
}

// mayskip reports whether this call may end as "unchanged": a refresh,
// not forced, with a merge (and its origin record) in place whose mount
// attributes are those this call would give it and whose metadata no
// other mount covers.
func (e *engine) mayskip(c *call) bool {
	return c.refresh && c.old != nil && !c.always && !metaCovered(c.states) && e.attrsUnchanged(c.states)
}

// metaCovered reports whether a merge in place has another mount over its
// metadata (uncoveredMeta): skipping would leave it unrecognizable to
// systemd, so such a refresh replaces it.
func metaCovered(states []*hierState) bool {
	for _, s := range states {
		if s.ours && s.metaCovered {
			return true
		}
	}
	return false
}

// fastSkip is the skip without any loop device: every image's verdict is
// known from the last run for the same identity and the same verdict
// inputs (verdictInputs), so "unchanged" is decided from the state file.
// done is set when the call ends here (skipped, or an essential image is
// known to be refused); else the verdicts are cleared for check.
func (e *engine) fastSkip(c *call) (done bool, err error) {
	if !e.mayskip(c) || !e.knownVerdicts(c.cands, c.prev, c.hh, c.inputs) {
		return false, nil
	}
	for _, cd := range c.cands {
		if !cd.accepted && e.essential(cd.img.Name) {
			return true, &imageError{cd.img.Name, e.display(cd.img.Path), "essential image rejected: " + cd.reason, nil}
		}
	}
	if e.unchanged(c.old, c.oldFrom, c.doc, c.cands, c.prev) {
		e.skipped(c)
		return true, nil
	}
	for _, cd := range c.cands {
		cd.accepted, cd.reason = false, ""
	}
	return false, nil
}

// skipAfterCheck ends a refresh whose checked images give the origin
// record in place: nothing is remounted, the verdicts are saved.
func (e *engine) skipAfterCheck(c *call) bool {
	if !e.mayskip(c) || !e.unchanged(c.old, c.oldFrom, c.doc, c.cands, c.prev) {
		return false
	}
	e.skipped(c)
	e.saveState(e.newState(c.cands, c.hh, c.inputs))
	return true
}

// skipped reports a refresh that found no change, with systemd's line.
func (e *engine) skipped(c *call) {
	e.infof("Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh.")
	c.res.Unchanged = true
	c.res.Merged = acceptedNames(c.cands)
}

// keepForTransient keeps the merge in place when replacing it now would
// drop a good image for an error of the system (EBUSY, EIO, ...): the
// next refresh retries, nothing is remembered.
func (e *engine) keepForTransient(c *call) bool {
	if !c.refresh || c.old == nil {
		return false
	}
	lost := transientlyLost(c.old, c.cands)
	if len(lost) == 0 {
		return false
	}
	e.log.Warnf("%s refresh: keeping the merge in place: %s, merged there, failed now with a transient error", e.cls.Name, strings.Join(lost, "; "))
	c.res.Unchanged = true
	for _, cd := range c.cands {
		if !cd.accepted {
			e.skip(c.res, cd.img, cd.reason)
		}
	}
	c.res.Merged = acceptedNames(c.cands)
	return true
}

// noImages ends a call in mutable mode "no" that accepted no image:
// systemd's message, and a refresh unmerges what is merged.
func (e *engine) noImages(ctx context.Context, c *call) error {
	if n := len(c.res.Skipped); n > 0 {
		e.infof("No suitable extensions found (%d ignored due to incompatible image(s)).", n)
	} else {
		e.infof("No extensions found.")
	}
	if c.refresh {
		if err := e.unmergeAll(ctx, c.res); err != nil {
			return err
		}
	}
	e.saveState(e.newState(c.cands, c.hh, c.inputs))
	return nil
}

// logUsing prints systemd's line naming the images about to be merged.
func (e *engine) logUsing(c *call) {
	if len(c.res.Merged) == 0 {
		e.infof("No extensions found, proceeding in mutable mode.")
		return
	}
	var files []string
	for _, cd := range c.cands {
		if cd.accepted {
			files = append(files, path.Base(cd.img.Path))
		}
	}
	sort.Slice(files, func(i, j int) bool { return vpick.StrverscmpImproved(files[i], files[j]) < 0 })
	e.infof("Using extensions '%s'.", strings.Join(files, "', '"))
}

// stageAndApply stages every hierarchy before attaching any
// (all-or-nothing, like systemd 262, which builds all of them before
// moving any into place), then attaches them (applyPlans).
func (e *engine) stageAndApply(c *call) error {
	c.doc.Extensions = originExtensions(c.cands)
	originBytes := c.doc.MarshalSystemd()
	plans := make([]*hierPlan, 0, len(c.states))
	defer func() {
		for _, p := range plans {
			p.discard()
		}
	}()
	for _, s := range c.states {
		p, err := e.stageHierarchy(s, c.mode, c.cands, c.res.Merged, originBytes)
		if err != nil {
			return err
		}
		plans = append(plans, p)
	}
	return e.applyPlans(plans, c.res)
}

// originBase is the part of the origin record that does not depend on the
// images: mutable mode, mutable dirs and mount options.
func (e *engine) originBase(mode string) (*record.Origin, error) {
	doc := &record.Origin{MutableDirs: map[string]string{}, MutableDirOrder: e.hiers, MountOptions: e.getenv(e.cls.OverlayOptionsEnv)}
	doc.Mode, _ = config.ParseMutableMode(mode)
	for _, h := range e.hiers {
		d, err := e.mutableDirForOrigin(h, mode)
		if err != nil {
			return nil, err
		}
		if d != "" {
			doc.MutableDirs[h] = d
		}
	}
	return doc, nil
}

// originExtensions builds the origin entries of the accepted images, in
// name order.
func originExtensions(cands []*candidate) []record.OriginExtension {
	var out []record.OriginExtension
	for _, c := range cands {
		if !c.accepted {
			continue
		}
		x := c.id
		x.Name = c.img.Name
		if c.opened != nil && c.opened.verityHash != nil {
			x = record.OriginExtension{Name: c.img.Name, Path: x.Path, VerityHash: fmt.Sprintf("%x", c.opened.verityHash)}
		}
		out = append(out, x)
	}
	return out
}

func acceptedNames(cands []*candidate) []string {
	var n []string
	for _, c := range cands {
		if c.accepted {
			n = append(n, c.img.Name)
		}
	}
	return n
}

// AlreadyMergedError is Merge finding a merge (ours or systemd's) in
// place; Hierarchy is the hierarchy as configured ("/etc"), what systemd
// 262 names in its error (the Varlink error io.systemd.sysext.AlreadyMerged
// carries it).
type AlreadyMergedError struct{ Hierarchy string }

func (e *AlreadyMergedError) Error() string {
	return fmt.Sprintf("hierarchy '%s' is already merged: %v", e.Hierarchy, unix.EBUSY)
}

// Unwrap makes errors.Is(err, unix.EBUSY) hold, as before.
func (e *AlreadyMergedError) Unwrap() error { return unix.EBUSY }

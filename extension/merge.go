package extension

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
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
const changedRetries = 5

// runRetry is run, started over (lock, inspection, decision) when the
// re-check right before attaching found the hierarchy changed by another
// tool; nothing was attached then.
func runRetry(ctx context.Context, opt Options, refresh bool) (*Result, error) {
	for i := 0; ; i++ {
		res, err := run(ctx, opt, refresh)
		if !errors.Is(err, errMergeChanged) || i >= changedRetries {
			return res, err
		}
		if opt.Log != nil {
			opt.Log.Warnf("%v; starting over", err)
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

// candidate is a discovered image with its identity and verdict.
type candidate struct {
	img      Image
	id       OriginExtension
	opened   *openedImage
	accepted bool
	reason   string
	fp       string // DirFingerprint of an accepted directory image, once walked
	edited   bool   // in-place edit already reported (unchanged runs twice)
	// transient: rejected for an error of the system (EBUSY, EIO, ...), not
	// a verdict on the image; never remembered, so the next run retries.
	transient bool
}

// transientlyLost lists the images of the merge in place (by its origin
// record) that were rejected now for a transient error, with the error.
func transientlyLost(old []byte, cands []*candidate) []string {
	d, err := ParseOrigin(bytes.NewReader(old))
	if err != nil {
		return nil
	}
	o, err := d.Origin()
	if err != nil {
		return nil
	}
	in := map[string]bool{}
	for _, x := range o.Extensions {
		in[x.Name] = true
	}
	var lost []string
	for _, c := range cands {
		if c.transient && in[c.img.Name] {
			lost = append(lost, c.img.Name+" ("+c.reason+")")
		}
	}
	return lost
}

// transientErr reports errors that say nothing about an image's content:
// a later run may succeed (found by the fault-injection test: an EBUSY of
// one mount was remembered as the image's verdict, and every later refresh
// of that boot skipped a good image).
func transientErr(err error) bool {
	for _, e := range []error{unix.EBUSY, unix.EIO, unix.EINTR, unix.EAGAIN, unix.ENOMEM, unix.ENOSPC, unix.ENFILE, unix.EMFILE, unix.EROFS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
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

// runLocked is run's read-decide-modify, with the hierarchy locks held.
func (e *engine) runLocked(ctx context.Context, refresh, alwaysRefresh bool) (*Result, error) {
	res := &Result{}
	mode, err := e.mutableMode()
	if err != nil {
		return nil, err
	}
	host, scope, err := e.hostRelease()
	if err != nil {
		return nil, err
	}

	states, err := e.inspectAll()
	defer func() { closeStates(states) }()
	if err != nil {
		return nil, err
	}
	if states, err = e.unstack(states); err != nil {
		return nil, err
	}
	// Work dirs of ours that no merge uses (a run killed after creating
	// one, or after a replacement but before removing the old one) go
	// now, also when this refresh turns out to skip (found by the
	// fault-injection test).
	for _, s := range states {
		keep := ""
		if s.ours {
			keep = s.oldWork
		}
		e.sweepWork(s.h, keep)
	}
	for _, s := range states {
		if s.ours && !refresh {
			return nil, &AlreadyMergedError{Hierarchy: s.h}
		}
	}
	var old []byte
	var oldFrom string // the origin file old was read from, for messages
	if s := firstOrigin(states); s != nil {
		old, oldFrom = s.origin, e.display(s.h)+"/"+e.cls.DotDir+"/origin"
	}

	// The policy is resolved once, before any image is opened; a
	// configuration that cannot be read fails the call.
	if _, _, err := e.imagePolicy(); err != nil {
		return nil, err
	}
	imgs, err := e.discover()
	if err != nil {
		return nil, fmt.Errorf("discover %s images: %w", e.cls.Name, err)
	}
	sort.Slice(imgs, func(i, j int) bool { return vpick.StrverscmpImproved(imgs[i].Name, imgs[j].Name) < 0 })
	cands := make([]*candidate, 0, len(imgs))
	defer func() {
		for _, c := range cands {
			if c.opened != nil {
				c.opened.Close()
			}
		}
	}()
	for _, img := range imgs {
		id, err := ImageIdentity(e.rfs, img, e.identityOptions())
		if err != nil {
			if e.essential(img.Name) {
				return nil, &imageError{img.Name, e.display(img.Path), "essential image cannot be identified", err}
			}
			e.skip(res, img, fmt.Sprintf("cannot identify image: %v", err))
			continue
		}
		cands = append(cands, &candidate{img: img, id: id})
	}

	doc, err := e.originBase(mode)
	if err != nil {
		return nil, err
	}
	hh := hostReleaseHash(host, scope)
	prev := e.loadState()

	// Fast path: every image's verdict is known from the last run for the
	// same identity, so "unchanged" is decided without any loop device.
	if refresh && old != nil && !alwaysRefresh && e.knownVerdicts(cands, prev, hh) {
		for _, c := range cands {
			if !c.accepted && e.essential(c.img.Name) {
				return nil, &imageError{c.img.Name, e.display(c.img.Path), "essential image rejected: " + c.reason, nil}
			}
		}
		if e.unchanged(old, oldFrom, doc, cands, prev) {
			e.infof("Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh.")
			res.Unchanged = true
			res.Merged = acceptedNames(cands)
			return res, nil
		}
		for _, c := range cands {
			c.accepted, c.reason = false, ""
		}
	}

	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := e.check(c, host, scope); err != nil {
			return res, err
		}
	}
	if refresh && old != nil && !alwaysRefresh && e.unchanged(old, oldFrom, doc, cands, prev) {
		e.infof("Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh.")
		res.Unchanged = true
		res.Merged = acceptedNames(cands)
		e.saveState(e.newState(cands, hh))
		return res, nil
	}
	if refresh && old != nil {
		if lost := transientlyLost(old, cands); len(lost) > 0 {
			// Replacing the merge now would drop a good image for an
			// error of the system; keep the merge in place (the next
			// refresh retries, nothing is remembered).
			e.log.Warnf("%s refresh: keeping the merge in place: %s, merged there, failed now with a transient error", e.cls.Name, strings.Join(lost, "; "))
			res.Unchanged = true
			for _, c := range cands {
				if !c.accepted {
					e.skip(res, c.img, c.reason)
				}
			}
			res.Merged = acceptedNames(cands)
			return res, nil
		}
	}
	for _, c := range cands {
		if !c.accepted {
			e.skip(res, c.img, c.reason)
		}
	}
	res.Merged = acceptedNames(cands)
	if len(res.Merged) == 0 && mode == "no" {
		if n := len(res.Skipped); n > 0 {
			e.infof("No suitable extensions found (%d ignored due to incompatible image(s)).", n)
		} else {
			e.infof("No extensions found.")
		}
		if refresh {
			if err := e.unmergeAll(ctx, res); err != nil {
				return res, err
			}
		}
		e.saveState(e.newState(cands, hh))
		return res, nil
	}
	if len(res.Merged) == 0 {
		e.infof("No extensions found, proceeding in mutable mode.")
	} else {
		var files []string
		for _, c := range cands {
			if c.accepted {
				files = append(files, path.Base(c.img.Path))
			}
		}
		sort.Slice(files, func(i, j int) bool { return vpick.StrverscmpImproved(files[i], files[j]) < 0 })
		e.infof("Using extensions '%s'.", strings.Join(files, "', '"))
	}
	doc.Extensions = originExtensions(cands)
	originBytes := doc.MarshalSystemd()

	// Stage every hierarchy before attaching any (all-or-nothing, like
	// systemd 262, which builds all of them before moving any into place).
	plans := make([]*hierPlan, 0, len(states))
	defer func() {
		for _, p := range plans {
			p.discard()
		}
	}()
	for _, s := range states {
		p, err := e.stageHierarchy(s, mode, cands, res.Merged, originBytes)
		if err != nil {
			return res, err
		}
		plans = append(plans, p)
	}
	if err := e.applyPlans(plans, res); err != nil {
		return res, err
	}
	e.saveState(e.newState(cands, hh))
	return res, nil
}

// originBase is the part of the origin record that does not depend on the
// images: mutable mode, mutable dirs and mount options.
func (e *engine) originBase(mode string) (*Origin, error) {
	doc := &Origin{MutableDirs: map[string]string{}, MutableDirOrder: e.hiers, MountOptions: e.getenv(e.cls.OverlayOptionsEnv)}
	doc.Mode, _ = ParseMutableMode(mode)
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
func originExtensions(cands []*candidate) []OriginExtension {
	var out []OriginExtension
	for _, c := range cands {
		if !c.accepted {
			continue
		}
		x := c.id
		x.Name = c.img.Name
		if c.opened != nil && c.opened.verityHash != nil {
			x = OriginExtension{Name: c.img.Name, Path: x.Path, VerityHash: fmt.Sprintf("%x", c.opened.verityHash)}
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

// check opens and validates one image (unless its verdict is known) and
// records the verdict. It returns an error only for an essential image
// that cannot be used, or a cancelled context.
func (e *engine) check(c *candidate, host release.Host, scope string) error {
	o, err := e.openImage(c.img)
	if err != nil {
		c.reason, c.transient = err.Error(), transientErr(err)
		if e.essential(c.img.Name) {
			return fmt.Errorf("essential %w", err)
		}
		return nil
	}
	c.opened = o
	ok, reason, err := e.validate(o, host, scope)
	if err != nil {
		reason, c.transient = err.Error(), transientErr(err)
	}
	if !ok {
		c.reason = reason
		if e.essential(c.img.Name) {
			return &imageError{c.img.Name, e.display(c.img.Path), "essential image rejected: " + reason, nil}
		}
		return nil
	}
	c.accepted = true
	if c.img.Type == ImageDirectory && c.fp == "" {
		// The fast path may have walked it already; once per run is enough.
		c.fp = e.fingerprint(c.img, o.tree)
	}
	return nil
}

// validate checks an opened image's extension-release against the host.
func (e *engine) validate(o *openedImage, host release.Host, scope string) (bool, string, error) {
	if e.opt.Force {
		return true, "", nil
	}
	cls := *e.cls
	if o.usrOnly {
		if !strings.HasPrefix(cls.ReleaseDir, "/usr/") {
			return false, "a usr partition cannot carry " + cls.ReleaseDir, nil
		}
		cls.ReleaseDir = strings.TrimPrefix(cls.ReleaseDir, "/usr")
	}
	rf, err := ReadReleaseFile(o.tree, &cls, o.img.Name, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Sprintf("no release file %s/extension-release.%s in the image", e.cls.ReleaseDir, o.img.Name), nil
	}
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", rf.Path, err)
	}
	p, fields := rf.Path, rf.Fields
	for _, is := range rf.Issues {
		e.log.Noticef("%s image %s: %s (ignored, as systemd does)", e.cls.Name, o.img.Name, is)
	}
	ok, reason, err := release.Validate(fields, host, release.Options{
		ScopeKey: e.cls.ScopeKey, LevelKey: e.cls.LevelKey, Scope: scope, Arch: release.UnameArchitecture(),
	})
	if err != nil {
		return false, "", err
	}
	if !ok {
		return false, p + ": " + reason, nil
	}
	if !o.usrOnly {
		if bad, err := HasForbiddenContent(o.tree, e.cls); err != nil {
			return false, "", err
		} else if bad {
			return false, "image contains /usr/lib/os-release, which would replace the host's", nil
		}
	}
	return true, "", nil
}

// essential reports whether name matches one of the Essential patterns.
func (e *engine) essential(name string) bool {
	for _, p := range e.opt.Essential {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// skip logs and records an image left out, naming the file and the rule.
func (e *engine) skip(res *Result, img Image, reason string) {
	e.log.Warnf("skipping %s image %s (%s): %s", e.cls.Name, img.Name, e.display(img.Path), reason)
	res.Skipped = append(res.Skipped, Skip{Name: img.Name, Reason: reason})
}

// knownVerdicts fills in the verdicts from the last run when every image
// has the identity it had then; false means some image must be opened.
func (e *engine) knownVerdicts(cands []*candidate, st *runState, hh string) bool {
	if st == nil || st.HostRelease != hh || st.Force != e.opt.Force {
		return false
	}
	for _, c := range cands {
		rec, ok := st.Images[c.img.Name]
		if !ok || rec.Identity != c.id || rec.Type != c.img.Type.String() {
			return false
		}
	}
	for _, c := range cands {
		rec := st.Images[c.img.Name]
		c.accepted, c.reason = rec.Accepted, rec.Reason
	}
	return true
}

// unchanged compares the origin the images would produce with the one in
// place and checks directory images for in-place edits.
func (e *engine) unchanged(old []byte, oldFrom string, doc *Origin, cands []*candidate, st *runState) bool {
	d := *doc
	d.Extensions = originExtensions(cands)
	od, err := ParseOrigin(bytes.NewReader(old))
	if err != nil {
		e.log.Warnf("cannot parse %s of the merge in place (refreshing): %v", oldFrom, err)
		return false
	}
	if !Equal(od, d.Document()) {
		return false
	}
	if st == nil {
		return true
	}
	for _, c := range cands {
		if !c.accepted || c.img.Type != ImageDirectory {
			continue
		}
		rec, ok := st.Images[c.img.Name]
		if !ok || rec.Fingerprint == "" {
			continue
		}
		if rec.Fingerprint == fingerprintUnknown {
			e.log.Noticef("directory image %s could not be fingerprinted last time; refreshing", c.img.Name)
			return false
		}
		if c.fp == "" {
			c.fp = e.fingerprint(c.img, nil)
		}
		if c.fp == fingerprintUnknown {
			return false // logged by fingerprint: cannot show it is unchanged
		}
		if c.fp != rec.Fingerprint {
			if !c.edited {
				e.log.Noticef("directory image %s changed in place; refreshing", c.img.Name)
				c.edited = true
			}
			return false
		}
	}
	return true
}

// newState records the verdicts of this run.
func (e *engine) newState(cands []*candidate, hh string) *runState {
	st := &runState{Root: e.rootPath, HostRelease: hh, Force: e.opt.Force, Images: map[string]imageState{}}
	for _, c := range cands {
		if !c.accepted && (c.reason == "" || c.transient) {
			continue
		}
		fp := c.fp
		if c.accepted && c.img.Type == ImageDirectory && fp == "" {
			fp = e.fingerprint(c.img, nil)
		}
		st.Images[c.img.Name] = imageState{Identity: c.id, Type: c.img.Type.String(), Accepted: c.accepted, Reason: c.reason, Fingerprint: fp}
	}
	return st
}

// fingerprintUnknown is recorded (and compared) when a directory image
// could not be fingerprinted. Without a fingerprint an in-place edit of
// the image cannot be detected, so the conservative reading is "changed":
// the next refresh replaces the merge instead of skipping.
const fingerprintUnknown = "unknown"

// fingerprint returns the DirFingerprint of the directory image img, from
// tree when it is already open (else opened here), or fingerprintUnknown
// with a warning when that fails.
func (e *engine) fingerprint(img Image, tree *os.File) string {
	fp, err := func() (string, error) {
		if tree != nil {
			return fingerprintOpened(tree)
		}
		dir, err := openDirIn(e.root, img.Path)
		if err != nil {
			return "", err
		}
		defer dir.Close()
		return fingerprintOpened(dir)
	}()
	if err != nil {
		e.log.Warnf("cannot fingerprint directory image %s (in-place edits of it cannot be detected, so a refresh will not skip): %v", e.display(img.Path), err)
		return fingerprintUnknown
	}
	return fp
}

// fingerprintOpened is DirFingerprint for a directory image opened by
// O_PATH fd.
func fingerprintOpened(dir *os.File) (string, error) {
	d, err := reopen(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return "", err
	}
	defer d.Close()
	return FingerprintTree(d)
}

// hostRelease reads the root's os-release (SYSTEMD_OS_RELEASE overrides
// it, as in systemd) and names the scope images are validated for; with
// --force an unreadable os-release is no error.
func (e *engine) hostRelease() (release.Host, string, error) {
	host, err := release.LoadHost(func(p string) (*os.File, error) {
		return rootfs.OpenIn(e.root, p, unix.O_RDONLY)
	}, e.getenv("SYSTEMD_OS_RELEASE"))
	if err != nil && !e.opt.Force {
		return host, "", fmt.Errorf("host os-release of %s: %w", e.rootPath, err)
	}
	scope := "system"
	if e.initrd {
		scope = "initrd"
	}
	return host, scope, nil
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

package boot

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/prepare"
)

// Stage is one of the two pipeline stages.
type Stage string

// The two stages, run by ext-setup-root-pre.service and
// ext-setup-root-post.service.
const (
	StagePre  Stage = "pre"
	StagePost Stage = "post"
)

// DefaultEssential are the confext name patterns that must merge when no
// other list is configured: the vendor default confext (Flatcar's
// 00-flatcar-default). A pattern without glob characters must also exist.
var DefaultEssential = []string{"00-*default*"}

// Options configure one Run.
type Options struct {
	Stage Stage
	// Root is the target root (/sysroot in the initrd).
	Root   string
	DryRun bool
	// Cmdline are the kernel command line switches (ParseCmdline).
	Cmdline Cmdline
	// Essential are confext name patterns that must not be skipped; nil
	// means the default (FlatcarEssential on a Flatcar root, else
	// DefaultEssential), Cmdline.Essential (when set) wins.
	Essential []string
	// Flatcar says the root has the Flatcar layout (IsFlatcarRoot): the
	// default essential list is then the vendor default confext by name,
	// as Flatcar's bootengine requires it.
	Flatcar bool
	// SysextEssential are sysext name patterns that must not be skipped
	// (none by default: a broken sysext never stops the boot).
	SysextEssential []string
	// ImagePolicy is the image policy for raw confexts and sysexts
	// (boot.toml's image_policy); Cmdline.ImagePolicy wins. "" leaves it
	// to ImagePolicy= in the class's .conf, then the class default.
	ImagePolicy string
	Ext         Extensions
	Sel         Selector
	// Prep runs the prepare step of the pre stage; nil skips it.
	Prep    Preparer
	RootOps RootOps
	Log     *oplog.Logger
	// Now is time.Now unless a test sets it.
	Now func() time.Time
	// Kernel is the kernel feature table; nil probes the running kernel
	// (mount.Kernel). Below mount.MinKernel the stage fails before any
	// change.
	Kernel *mount.Features
}

// Summary is what a stage did, logged as its last line.
type Summary struct {
	Stage    Stage
	Duration time.Duration
	Disabled string // why the stage did nothing, if it was disabled
	Link     string // mutable link state (pre)
	// Prepare is what the prepare step did (pre); PrepareNote says why
	// it did not run or failed.
	Prepare     *prepare.Result
	PrepareNote string
	Links       *SelectResult
	Confext     *ExtResult
	Sysext      *ExtResult
	// ConfextFinal is the confext refresh after a sysext merge changed /usr.
	ConfextFinal *ExtResult
	// SysextRecord says whether the sysext origin record was corrected
	// after ConfextFinal replaced /etc ("updated", "kept", "not
	// updated"); "" when that was not needed.
	SysextRecord string
	// SysextNote says why the sysext merge did not run or failed.
	SysextNote string
	Err        error
}

// String renders the summary line parsed by the QEMU tests; the format is
// stable: "stage NAME finished|failed in Nms (PARTS)[: ERROR]".
func (s *Summary) String() string {
	verb := "finished"
	if s.Err != nil {
		verb = "failed"
	}
	var parts []string
	if s.Disabled != "" {
		parts = append(parts, "disabled by "+s.Disabled)
	}
	if s.Prepare != nil {
		parts = append(parts, "prepare: "+s.Prepare.Summary())
	} else if s.PrepareNote != "" {
		parts = append(parts, "prepare: "+s.PrepareNote)
	}
	if s.Link != "" {
		parts = append(parts, "mutable link: "+s.Link)
	}
	if s.Links != nil {
		parts = append(parts, fmt.Sprintf("abslots: %d changes", s.Links.Changes))
	}
	if s.Confext != nil {
		parts = append(parts, "confext: "+extParts(s.Confext))
	}
	if s.Sysext != nil {
		parts = append(parts, "sysext: "+extParts(s.Sysext))
	} else if s.SysextNote != "" {
		parts = append(parts, "sysext: "+s.SysextNote)
	}
	if s.ConfextFinal != nil {
		parts = append(parts, "confext after sysext: "+extParts(s.ConfextFinal))
	}
	if s.SysextRecord != "" {
		parts = append(parts, "sysext record: "+s.SysextRecord)
	}
	line := fmt.Sprintf("stage %s %s in %dms (%s)", s.Stage, verb, s.Duration.Milliseconds(), strings.Join(parts, ", "))
	if s.Err != nil {
		line += ": " + s.Err.Error()
	}
	return line
}

func extParts(r *ExtResult) string {
	s := fmt.Sprintf("%d merged, %d skipped", len(r.Merged), len(r.Skipped))
	if r.Unchanged {
		s += ", unchanged"
	}
	if r.Gaps > 0 {
		s += fmt.Sprintf(", %d replaced with a gap (no MOVE_MOUNT_BENEATH)", r.Gaps)
	}
	return s
}

// Run runs one stage and logs its summary line. The returned error is
// non-nil exactly when the stage must fail the unit (and so the boot).
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = oplog.Discard()
	}
	start := o.Now()
	s := &Summary{Stage: o.Stage}
	kern := o.Kernel
	if kern == nil {
		kern = mount.Kernel()
	}
	o.Log.Debugf("kernel features: %s", kern)
	o.noteInitrdSwitches()
	err := mount.CheckKernel(kern)
	switch {
	case err != nil:
	case o.Stage == StagePre:
		err = runPre(ctx, &o, s)
	case o.Stage == StagePost:
		err = runPost(ctx, &o, s)
	default:
		err = fmt.Errorf("unknown stage %q (want pre or post)", o.Stage)
	}
	s.Duration = o.Now().Sub(start)
	s.Err = err
	if err != nil {
		o.Log.Errorf("%s", s)
	} else {
		o.Log.Noticef("%s", s)
	}
	return s, err
}

// noteInitrdSwitches says, for rd.systemd.confext=0 or
// rd.systemd.sysext=0 alone, that the switch does not reach /sysroot: in
// systemd 262 it is read only by the units merging the initrd's own
// hierarchies, and the sysroot units read systemd.confext= and
// systemd.sysext=.
func (o *Options) noteInitrdSwitches() {
	for _, sw := range []struct {
		rd, main bool
		class    Class
	}{{o.Cmdline.InitrdConfextOff, o.Cmdline.ConfextOff, Confext}, {o.Cmdline.InitrdSysextOff, o.Cmdline.SysextOff, Sysext}} {
		if sw.rd && !sw.main {
			o.Log.Noticef("rd.systemd.%s=0 applies to the initrd's own hierarchies only (systemd-%s-initrd.service), as in systemd 262; %ss of %s follow systemd.%s=", sw.class, sw.class, sw.class, o.Root, sw.class)
		}
	}
}

func (o *Options) essential() []string {
	switch {
	case o.Cmdline.Essential != nil:
		return o.Cmdline.Essential
	case o.Essential != nil:
		return o.Essential
	case o.Flatcar:
		return FlatcarEssential
	}
	return DefaultEssential
}

// noteNoDefault logs, once per merge, that no vendor default confext was
// found when the glob default is in force (not on Flatcar, where the name
// is required, nor when patterns were configured): nothing fails, but a
// reader of the log should not have to guess.
func (o *Options) noteNoDefault(patterns []string, res ExtResult) {
	if !slices.Equal(patterns, DefaultEssential) || o.Cmdline.Essential != nil || o.Essential != nil {
		return
	}
	for _, p := range patterns {
		for _, n := range res.Merged {
			if ok, _ := path.Match(p, n); ok {
				return
			}
		}
		for _, sk := range res.Skipped {
			if ok, _ := path.Match(p, sk.Name); ok {
				return
			}
		}
	}
	o.Log.Noticef("no default confext found (no image named %s); none is required outside the Flatcar layout", strings.Join(patterns, ","))
}

func runPre(ctx context.Context, o *Options, s *Summary) error {
	if o.Cmdline.PreOff {
		s.Disabled = "ext-setup-root.stage.pre=0"
		return nil
	}
	// The /etc hygiene and first-boot duties come first, so that the
	// merge and then provisioning see a clean /etc. The confext images
	// the dedup opens serve the merge too, if unchanged by then.
	defer shareConfexts(o)()
	changedBelow := runPrepare(ctx, o, s)
	if o.Cmdline.ConfextOff {
		s.Disabled = "systemd.confext=0"
		return nil
	}
	if err := ensureLink(o, s); err != nil {
		return err
	}
	res, err := confextReq(ctx, o, "merge", changedBelow, nil)
	s.Confext = res
	return err
}

// runPrepare runs the prepare step and reports whether it changed the
// real /etc underneath an existing merge (a rerun), which the refresh
// must then remount. Its problems are warnings: the boot goes on, and
// /etc is merged either way.
func runPrepare(ctx context.Context, o *Options, s *Summary) bool {
	switch {
	case o.Prep == nil:
		return false
	case o.Cmdline.PrepareOff:
		s.PrepareNote = "disabled by ext-setup-root.prepare=0"
		return false
	}
	op := o.Log.Op("prepare %s: /etc hygiene and first-boot duties", o.Root)
	req := PrepareRequest{Root: o.Root, DryRun: o.DryRun, Essential: o.essential()}
	if o.Cmdline.ConfextOff {
		req.NoMerge = "no confext merge follows (systemd.confext=0)"
	}
	res, err := o.Prep.Prepare(ctx, req)
	if op.Finish(err) != nil {
		s.PrepareNote = "failed"
		o.Log.Errorf("prepare step failed, continuing with the merge: %v", err)
		return false
	}
	s.Prepare = res
	if o.DryRun && res != nil {
		for _, line := range strings.Split(strings.TrimRight(res.String(), "\n"), "\n") {
			o.Log.Infof("dry run: %s", line)
		}
	}
	return res != nil && res.BelowMerge && res.Changed() && !o.DryRun
}

func runPost(ctx context.Context, o *Options, s *Summary) error {
	if o.Cmdline.PostOff {
		s.Disabled = "ext-setup-root.stage.post=0"
		return nil
	}
	// A/B selection first: it decides which sysext images the links point
	// at, and may move images, before anything is merged from them.
	var errs []error
	op := o.Log.Op("select A/B images and update links in %s", o.Root)
	sel, err := o.Sel.Select(ctx, o.Root, o.DryRun)
	if op.Finish(err) != nil {
		// The merges below still run (so that emergency mode has /etc and
		// the other extensions), but the stage fails at the end.
		errs = append(errs, fmt.Errorf("A/B selection: %w", err))
	} else {
		s.Links = &sel
	}
	if o.Cmdline.ConfextOff {
		o.Log.Noticef("confext refresh skipped: systemd.confext=0 on the kernel command line")
	} else {
		// Refresh so that confexts placed by provisioning (Ignition) since
		// the pre stage appear; atomic, /etc stays mounted throughout.
		res, err := postConfext(ctx, o, s)
		s.Confext = res
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := sysext(ctx, o, s); err != nil {
		errs = append(errs, err)
	}
	if s.Sysext != nil && !s.Sysext.Unchanged && !o.Cmdline.ConfextOff && !o.DryRun {
		// The merge over /usr changed the identity (mount id, file handle)
		// under which confext images stored in /usr, such as the vendor
		// default in /usr/lib/confexts, are seen; systemd records those in
		// the confext origin unless the image has a verity hash. Refresh
		// once more so that the record matches what the booted system's
		// systemd-confext refresh will see, and it skips.
		o.Log.Infof("refreshing confexts again: the sysext merge changed /usr, where confext images may live")
		res, err := confext(ctx, o, "refresh")
		s.ConfextFinal = res
		if err != nil {
			errs = append(errs, err)
		} else if res != nil && !res.Unchanged {
			rerecordSysext(ctx, o, s)
		}
	}
	return errors.Join(errs...)
}

// postConfext is the post stage's first confext step: a refresh of the
// pre stage's merge, or, when nothing is merged (the pre stage was
// disabled or merged nothing), a merge, which needs the mutable link the
// pre stage would have made, or /etc comes up read-only for the whole
// boot. With ext-setup-root.stage.pre=0, the documented way past a broken
// default confext, the essential patterns are not enforced here either:
// they are the pre stage's check, and a skipped essential image is logged
// by the engine like any other.
func postConfext(ctx context.Context, o *Options, s *Summary) (*ExtResult, error) {
	if o.Cmdline.PreOff {
		o.Log.Noticef("ext-setup-root.stage.pre=0: essential confext patterns (%s) not enforced in the post stage", strings.Join(o.essential(), ","))
		o.Cmdline.Essential = []string{}
	}
	return confextReq(ctx, o, "refresh", false, s)
}

// rerecordSysext runs after the confext refresh that followed the sysext
// merge replaced /etc. Sysext images stored under /etc (Flatcar's
// /etc/flatcar/sysext) are now seen under the new /etc mount, so the
// sysext merge's origin record, taken under the old one, no longer
// matches what the booted systemd-sysext computes, and it would remount
// /usr for nothing. Redoing the sysext merge would change /usr and, in
// turn, the confext record of the default confext in /usr/lib/confexts.
// The way out of that circle: the same files are merged, so only the
// record is corrected, in place. Failing to do so costs one remount in the
// booted system, never correctness, so it is logged, not an error.
func rerecordSysext(ctx context.Context, o *Options, s *Summary) {
	rr, ok := o.Ext.(Rerecorder)
	if !ok || s.Sysext == nil {
		return
	}
	req := ExtRequest{Class: Sysext, Root: o.Root, Essential: o.SysextEssential, ImagePolicy: o.imagePolicy()}
	res, err := rr.Rerecord(ctx, req)
	switch {
	case err != nil:
		s.SysextRecord = "not updated"
		o.Log.Warnf("sysext origin record not updated after /etc changed (the booted systemd-sysext will remount /usr once): %v", err)
	case res.Rewritten:
		s.SysextRecord = "updated"
	default:
		s.SysextRecord = "kept"
		o.Log.Infof("sysext origin record kept: %s", res.Reason)
	}
}

func ensureLink(o *Options, s *Summary) error {
	link := path.Join(o.Root, MutableLinkDir, MutableLinkName)
	if o.DryRun {
		st, err := o.RootOps.EnsureMutableLink(o.Root, true)
		if err != nil {
			return err
		}
		o.Log.Infof("dry run: mutable link %s -> %s: %s", link, MutableLinkTarget, st)
		s.Link = st.String()
		return nil
	}
	op := o.Log.Op("ensure symlink %s -> %s", link, MutableLinkTarget)
	st, err := o.RootOps.EnsureMutableLink(o.Root, false)
	if op.Finish(err) != nil {
		return fmt.Errorf("mutable /etc link %s: %w", link, err)
	}
	if st == LinkForeign {
		o.Log.Warnf("%s exists and is not a symlink to %s; kept it, the confext upper dir is whatever it is", link, MutableLinkTarget)
	}
	s.Link = st.String()
	return nil
}

// confext merges (pre) or refreshes (post) the confexts in mutable mode
// "auto": with the extensions.mutable/etc -> /etc link, /etc itself is the
// upper dir. A merge that finds a merge already in place refreshes
// instead, so a rerun converges without unmounting /etc.
func confext(ctx context.Context, o *Options, verb string) (*ExtResult, error) {
	return confextReq(ctx, o, verb, false, nil)
}

// confextReq is confext; with always, a refresh replaces the merge even
// when nothing in its record changed. With linkFor set, a request that
// turns out to be a merge (nothing merged yet) first ensures the mutable
// link and records it in linkFor.
func confextReq(ctx context.Context, o *Options, verb string, always bool, linkFor *Summary) (*ExtResult, error) {
	req := ExtRequest{Class: Confext, Root: o.Root, DefaultMutable: "auto", Essential: o.essential(), AlwaysRefresh: always, ImagePolicy: o.imagePolicy()}
	merged, err := o.Ext.Merged(ctx, o.Root, Confext)
	if err != nil {
		return nil, fmt.Errorf("confext status in %s: %w", o.Root, err)
	}
	if merged {
		verb = "refresh"
	} else if verb == "refresh" {
		// Nothing merged (the pre stage was disabled or found no images):
		// refresh merges then, exactly like systemd-confext refresh.
		verb = "merge"
	}
	if verb == "merge" && linkFor != nil {
		if err := ensureLink(o, linkFor); err != nil {
			return nil, err
		}
	}
	etc := path.Join(o.Root, "etc")
	if o.DryRun {
		o.Log.Infof("dry run: would %s confexts over %s (mutable: configured or auto, essential %s)", verb, etc, strings.Join(req.Essential, ","))
		return nil, nil
	}
	op := o.Log.Op("confext %s over %s (mutable: configured or auto, essential %s)", verb, etc, strings.Join(req.Essential, ","))
	var res ExtResult
	if verb == "refresh" {
		res, err = o.Ext.Refresh(ctx, req)
	} else {
		res, err = o.Ext.Merge(ctx, req)
	}
	if err == nil {
		err = checkEssential(Confext, req.Essential, res)
	}
	if op.Finish(err) != nil {
		return &res, fmt.Errorf("confext %s: %w", verb, err)
	}
	if verb == "merge" {
		o.noteNoDefault(req.Essential, res)
	}
	return &res, nil
}

// sysext merges the system extensions over /usr and /opt unless disabled
// on the command line or masked in the root; its failure only fails the
// stage when an essential sysext is affected.
func sysext(ctx context.Context, o *Options, s *Summary) error {
	if o.Cmdline.SysextOff {
		s.SysextNote = "disabled by systemd.sysext=0"
		o.Log.Noticef("sysext merge skipped: systemd.sysext=0 on the kernel command line")
		return nil
	}
	masked, err := o.RootOps.SysextMasked(o.Root)
	if err != nil {
		// Cannot tell: merging is the default systemd would apply too.
		o.Log.Warnf("cannot tell whether %s is masked, merging anyway: %v", path.Join(o.Root, SysextUnitPath), err)
	}
	if masked {
		s.SysextNote = "masked"
		o.Log.Noticef("sysext merge skipped: %s is masked", path.Join(o.Root, SysextUnitPath))
		return nil
	}
	merged, err := o.Ext.Merged(ctx, o.Root, Sysext)
	if err != nil {
		return o.sysextFailed(s, fmt.Errorf("sysext status in %s: %w", o.Root, err))
	}
	verb := "merge"
	if merged {
		verb = "refresh"
	}
	req := ExtRequest{Class: Sysext, Root: o.Root, Essential: o.SysextEssential, ImagePolicy: o.imagePolicy()}
	if o.DryRun {
		o.Log.Infof("dry run: would %s sysexts over %s and %s", verb, path.Join(o.Root, "usr"), path.Join(o.Root, "opt"))
		s.SysextNote = "dry run"
		return nil
	}
	op := o.Log.Op("sysext %s over %s and %s", verb, path.Join(o.Root, "usr"), path.Join(o.Root, "opt"))
	var res ExtResult
	if merged {
		res, err = o.Ext.Refresh(ctx, req)
	} else {
		res, err = o.Ext.Merge(ctx, req)
	}
	if err == nil {
		err = checkEssential(Sysext, req.Essential, res)
	}
	if op.Finish(err) != nil {
		return o.sysextFailed(s, fmt.Errorf("sysext %s: %w", verb, err))
	}
	s.Sysext = &res
	return nil
}

func (o *Options) sysextFailed(s *Summary, err error) error {
	var ee *EssentialError
	if errors.As(err, &ee) || len(o.SysextEssential) > 0 {
		return err
	}
	s.SysextNote = "failed"
	o.Log.Warnf("%v; continuing boot without system extensions", err)
	return nil
}

// imagePolicy is the policy text for the engines: the kernel command
// line's, else boot.toml's (both validated when read).
func (o Options) imagePolicy() string {
	if o.Cmdline.ImagePolicy != "" {
		return o.Cmdline.ImagePolicy
	}
	return o.ImagePolicy
}

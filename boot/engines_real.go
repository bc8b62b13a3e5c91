package boot

import (
	"context"
	"errors"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/extension"
	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/prepare"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// ErrEnginesUnavailable is returned when a stage needs the extension
// engine and none was given.
var ErrEnginesUnavailable = errors.New("no extension engine")

// ExtEngine is the Extensions backed by the extension package.
type ExtEngine struct {
	Getenv func(string) string
	Log    *oplog.Logger
	// Records keeps the meta layers of this process's merges for
	// Rerecord; nil disables Rerecord.
	Records *extension.Records
	// Handoff, if set, gives a confext merge or refresh the images the
	// prepare step's dedup opened (shareConfexts).
	Handoff *extension.Handoff
}

func (e ExtEngine) options(root string, c Class) extension.Options {
	cls := config.Confext
	if c == Sysext {
		cls = config.Sysext
	}
	return extension.Options{Root: root, Class: cls, Getenv: e.Getenv, Log: e.Log,
		Info: lineLogger{e.Log}, NoReload: true, Records: e.Records}
}

// Rerecord implements Rerecorder.
func (e ExtEngine) Rerecord(ctx context.Context, r ExtRequest) (RerecordResult, error) {
	if e.Records == nil {
		return RerecordResult{Reason: "no records kept"}, nil
	}
	o, err := e.request(r)
	if err != nil {
		return RerecordResult{}, err
	}
	res, err := extension.Rerecord(ctx, o)
	if res == nil {
		return RerecordResult{}, err
	}
	return RerecordResult{Rewritten: res.Rewritten, Reason: res.Reason}, err
}

// Merged implements Extensions.
func (e ExtEngine) Merged(_ context.Context, root string, c Class) (bool, error) {
	return extension.Merged(e.options(root, c))
}

// Merge implements Extensions.
func (e ExtEngine) Merge(ctx context.Context, r ExtRequest) (ExtResult, error) {
	o, err := e.request(r)
	if err != nil {
		return ExtResult{}, err
	}
	return convert(extension.Merge(ctx, o))
}

// Refresh implements Extensions.
func (e ExtEngine) Refresh(ctx context.Context, r ExtRequest) (ExtResult, error) {
	o, err := e.request(r)
	if err != nil {
		return ExtResult{}, err
	}
	return convert(extension.Refresh(ctx, o))
}

// request turns r into engine options, applying r.DefaultMutable only when
// systemd's own precedence (environment, then the root's config) sets no
// mode: an OS that configures Mutable= gets exactly what its booted
// systemd will use, so the origin records match and its refresh skips.
func (e ExtEngine) request(r ExtRequest) (extension.Options, error) {
	o := e.options(r.Root, r.Class)
	if r.Class == Confext {
		o.Handoff = e.Handoff
	}
	o.Mutable, o.Essential = r.Mutable, r.Essential
	o.AlwaysRefresh = r.AlwaysRefresh
	o.Force, o.Noexec = r.Force, r.Noexec
	if r.ImagePolicy != "" {
		p, err := image.ParsePolicy(r.ImagePolicy)
		if err != nil {
			return o, err
		}
		o.ImagePolicy = p
	}
	if o.Mutable != "" || r.DefaultMutable == "" {
		return o, nil
	}
	root, err := rootfs.Open(r.Root)
	if err != nil {
		return o, err
	}
	defer root.Close()
	cfg, err := config.LoadConfig(root, o.Class)
	if err != nil {
		return o, err
	}
	mode, src, _, err := config.ResolveMutableMode(o.Class, "", false, e.Getenv, cfg)
	if err != nil {
		return o, err
	}
	if src == config.ModeFromDefault {
		o.Mutable = r.DefaultMutable
		e.Log.Noticef("%s mutable mode: %s (nothing configured in %s; the booted system needs Mutable=%s in systemd/%s too, or its refresh will not skip)",
			r.Class, r.DefaultMutable, r.Root, r.DefaultMutable, o.Class.ConfigName)
	} else {
		e.Log.Infof("%s mutable mode: %s (from %s)", r.Class, mode, src)
	}
	return o, nil
}

func convert(res *extension.Result, err error) (ExtResult, error) {
	var r ExtResult
	if res != nil {
		r.Merged = res.Merged
		r.Unchanged = res.Unchanged
		r.Gaps = res.Gaps
		for _, s := range res.Skipped {
			r.Skipped = append(r.Skipped, Skip{Name: s.Name, Reason: s.Reason})
		}
	}
	return r, err
}

// lineLogger turns the engine's user-facing lines ("Using extensions ...")
// into info log lines.
type lineLogger struct{ l *oplog.Logger }

func (w lineLogger) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.l.Infof("%s", line)
		}
	}
	return len(p), nil
}

// AbslotsSelector is the Selector backed by the abslots engine.
type AbslotsSelector struct {
	Getenv  func(string) string
	Cmdline string // kernel command line contents
	Log     *oplog.Logger
	// Fetcher, when set, downloads images the selection wants and no
	// store holds (package fetch).
	Fetcher abslots.Fetcher
}

// Select runs abslots.Run on root. ext-setup-root.abslots=0 on the kernel
// command line is not a failure: the stage goes on with the links as they
// are.
func (s AbslotsSelector) Select(ctx context.Context, root string, dryRun bool) (SelectResult, error) {
	plan, err := abslots.Run(ctx, abslots.Options{
		Root:    root,
		DryRun:  dryRun,
		Log:     s.Log,
		Getenv:  s.Getenv,
		Cmdline: strings.NewReader(s.Cmdline),
		Fetcher: s.Fetcher,
	})
	if errors.Is(err, abslots.ErrDisabled) {
		return SelectResult{}, nil
	}
	var r SelectResult
	if plan != nil {
		// Changes actually made on disk; in a dry run, the planned ones.
		r.Changes = plan.Changed
		if dryRun {
			r.Changes = len(plan.Actions)
		}
	}
	return r, err
}

// RealEngines returns the production extension engine and A/B selector,
// configured with getenv (for SYSTEMD_*_MUTABLE_MODE and friends), the
// kernel command line and log.
func RealEngines(getenv func(string) string, cmdline string, log *oplog.Logger) (Extensions, Selector, error) {
	return ExtEngine{Getenv: getenv, Log: log, Records: &extension.Records{}}, AbslotsSelector{Getenv: getenv, Cmdline: cmdline, Log: log}, nil
}

// RealPreparer is the Preparer backed by package prepare.
type RealPreparer struct {
	Config prepare.Config
	Log    *oplog.Logger
	// Getenv and ImagePolicy (the stage's effective policy text, "" for
	// the class's) are used to open the confexts for the dedup exactly as
	// the merge that follows will (extension.OpenStack).
	Getenv      func(string) string
	ImagePolicy string
	// Handoff, if set, keeps the confext images the dedup opened for the
	// merge that follows (shareConfexts).
	Handoff *extension.Handoff
}

// shareConfexts makes the pre stage open every confext image once: when
// o has the real preparer and engine, the merge adopts the images the
// dedup opened and that are unchanged since (extension.Handoff). The
// returned func releases what the merge did not take.
func shareConfexts(o *Options) func() {
	p, okp := o.Prep.(RealPreparer)
	x, okx := o.Ext.(ExtEngine)
	if !okp || !okx {
		return func() {}
	}
	h := &extension.Handoff{}
	p.Handoff, x.Handoff = h, h
	o.Prep, o.Ext = p, x
	return h.Close
}

// Prepare implements Preparer.
func (p RealPreparer) Prepare(ctx context.Context, req PrepareRequest) (*prepare.Result, error) {
	return prepare.Run(ctx, prepare.Options{Root: req.Root, Config: p.Config, DryRun: req.DryRun, Log: p.Log,
		Confexts: p.confexts(req), NoDedup: req.NoMerge})
}

// confexts opens the confext stack the merge that follows will use, with
// the extension engine's own discovery and checks (dm-verity, signature,
// image policy, extension-release, the essential list) in this stage's
// configuration.
func (p RealPreparer) confexts(req PrepareRequest) func() (*prepare.Stack, error) {
	return func() (*prepare.Stack, error) {
		o := extension.Options{Root: req.Root, Class: config.Confext, Getenv: p.Getenv, Log: p.Log, NoReload: true,
			Essential: req.Essential, Handoff: p.Handoff}
		if p.ImagePolicy != "" {
			pol, err := image.ParsePolicy(p.ImagePolicy)
			if err != nil {
				return nil, err
			}
			o.ImagePolicy = pol
		}
		st, err := extension.OpenStack(o)
		if err != nil {
			return nil, err
		}
		out := &prepare.Stack{Close: st.Close}
		for _, l := range st.Layers {
			out.Layers = append(out.Layers, prepare.Layer{Name: l.Name, Where: l.Where, Dir: l.Dir})
		}
		for _, s := range st.Skipped {
			out.Skipped = append(out.Skipped, s.Name+": "+s.Reason)
		}
		return out, nil
	}
}

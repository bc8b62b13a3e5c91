package abslots

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// Options configure Run. Only Root is required.
type Options struct {
	// Root is the target root on the host (/sysroot in the initrd).
	Root string
	// FS, when set, is used instead of opening Root (tests, callers that
	// already hold the root open).
	FS FS
	// DryRun computes and logs the plan without changing anything; the
	// kernel command line switch ext-setup-root.dry-run also sets it.
	DryRun bool
	// ConfigFile, when set, is a host path of a TOML file applied on top of
	// the default instead of searching the root.
	ConfigFile string
	// Log receives every operation; nil discards.
	Log *oplog.Logger
	// Getenv is kept for callers; Run reads no environment variable (fault
	// injection, EXT_SETUP_ROOT_KILL_AT_STEP, is armed only by binaries built
	// with the testhooks tag, see internal/fault).
	Getenv func(string) string
	// Cmdline is the kernel command line; nil reads paths.ProcCmdline
	// (a missing file is fine offline).
	Cmdline io.Reader
	// Fetcher, when set, is asked for wanted images no store holds; after it
	// ran, facts are gathered and the plan made again.
	Fetcher Fetcher
	// OSVersion, when set, replaces the os-release version: the plan is
	// made for that version (before an update, for the next boot).
	OSVersion string
	// RecordFile, when set, is a host path (e.g. paths.StateDir +
	// "/abslots.json") where the applied plan is stored as JSON for
	// `status`; not written in a dry run.
	RecordFile string
}

// Fetcher provides images that no store holds, by a verified download
// (package fetch implements it).
type Fetcher interface {
	// Fetch places m.File into m.Dir inside root (crash-safe) or fails.
	Fetch(ctx context.Context, root FS, m Missing) error
	// Essential reports whether a failed fetch of m fails the run; else
	// it is one error line and the run goes on without the image.
	Essential(m Missing) bool
}

// ErrDisabled is returned (wrapped) when ext-setup-root.abslots=0 is on the
// kernel command line; the plan is then nil.
var ErrDisabled = errors.New("abslots disabled by ext-setup-root.abslots=0")

// openRoot opens the target root; set by the rootfs glue.
var openRoot func(string) (FS, error)

// Run is the entry point for the boot pipeline and the CLI: load the
// config, gather facts, make the plan, apply it (unless dry run) and return
// it. An essential missing image or a failed link change is an error after
// everything else was applied; bad inputs are logged as problems and the
// run goes on without the affected image.
func Run(ctx context.Context, o Options) (*Plan, error) {
	log := o.Log
	if log == nil {
		log = oplog.Discard()
	}
	cl, err := readCmdline(o.Cmdline)
	if err != nil {
		log.Warnf("abslots: %v; using an empty kernel command line", err)
	}
	sw, problems := switchesFrom(cl)
	for _, p := range problems {
		log.Warnf("abslots: %s", p)
	}
	if sw.Debug {
		log.SetDebug(true)
	}
	if sw.Disabled {
		log.Noticef("abslots: disabled by ext-setup-root.abslots=0, nothing done")
		return nil, ErrDisabled
	}
	root, closeRoot, err := o.root()
	if err != nil {
		return nil, err
	}
	defer closeRoot()
	cfg, err := loadConfig(root, o.ConfigFile)
	if err != nil {
		return nil, err
	}
	cfg.Switches = sw
	dry := o.DryRun || sw.DryRun
	facts := gather(root, cfg, o.OSVersion)
	facts.Slot = ReadSlot(cl, SlotEnv{DevDir: paths.DevDir, SysDevBlock: paths.SysDevBlock})
	plan := MakePlan(cfg, facts)
	var fetchErr error
	if o.Fetcher != nil && len(plan.Missing) > 0 && !dry {
		fetchErr = fetchMissing(ctx, o.Fetcher, root, plan, log)
		facts = gather(root, cfg, o.OSVersion)
		facts.Slot = ReadSlot(cl, SlotEnv{DevDir: paths.DevDir, SysDevBlock: paths.SysDevBlock})
		plan = MakePlan(cfg, facts)
	}
	annotateProtection(root, plan)
	logPlan(log, plan, o.Fetcher != nil)
	plan.Changed, err = Apply(root, cfg, plan, log, dry)
	if plan.Fatal != "" {
		err = errors.Join(err, errors.New(plan.Fatal))
	}
	err = errors.Join(err, fetchErr)
	if o.RecordFile != "" && !dry {
		op := log.Op("record the selection in %s", o.RecordFile)
		if rerr := op.Finish(writeRecord(o.RecordFile, plan)); rerr != nil {
			log.Warnf("selection record not written; status will not show it")
		}
	}
	return plan, err
}

func loadConfig(root FS, file string) (*Config, error) {
	if file == "" {
		return LoadConfig(root)
	}
	c := DefaultConfig()
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := c.Decode(f, file); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// readCmdline parses r, or paths.ProcCmdline when r is nil. On an error
// it returns an empty command line (no switches, no /usr device) with the
// error for the log: the selection still runs with its defaults.
func readCmdline(r io.Reader) (Cmdline, error) {
	name := "kernel command line"
	if r == nil {
		f, err := os.Open(paths.ProcCmdline)
		if errors.Is(err, fs.ErrNotExist) {
			return ParseCmdline(""), nil
		}
		if err != nil {
			return ParseCmdline(""), err
		}
		defer f.Close()
		r, name = f, paths.ProcCmdline
	}
	c, err := kcmdline.Parse(r)
	if err != nil {
		return ParseCmdline(""), fmt.Errorf("reading %s: %w", name, err)
	}
	return c, nil
}

func logPlan(log *oplog.Logger, p *Plan, fetcher bool) {
	for _, s := range p.Problems {
		log.Warnf("abslots: %s", s)
	}
	for _, c := range p.Choices {
		img := c.Image
		if img == "" {
			img = "(none)"
		}
		if c.Protection != "" {
			img += " [" + c.Protection + "]"
		}
		log.Infof("abslots: %s %s: %s: %s", c.Kind, c.Name, img, c.Reason)
	}
	why := "no fetcher"
	if fetcher {
		why = "fetch failed"
	}
	for _, m := range p.Missing {
		log.Noticef("abslots: %s image %s missing in %s (%s); boot goes on without it", m.Kind, m.File, m.Dir, why)
	}
	if len(p.Actions) == 0 {
		log.Infof("abslots: nothing to change")
	}
}

// String renders the plan for humans (`ext-setup-root plan`).
func (p *Plan) String() string {
	var b []byte
	w := func(f string, a ...any) { b = fmt.Appendf(b, f, a...) }
	w("version: %s=%s\n", p.VersionKey, p.Version)
	if p.OEMID != "" {
		w("oem id: %s\n", p.OEMID)
	}
	if s := p.Slot; s != nil {
		w("slot: %s %s (%s=%s)", s.Label, s.PartUUID, s.Param, s.Value)
		if s.Error != "" {
			w(" [%s]", s.Error)
		}
		w("\n")
		for _, pt := range s.Partitions {
			mark := " "
			if pt.Booted {
				mark = "*"
			}
			w("  %s %d %s priority=%d tries=%d successful=%v\n", mark, pt.Number, pt.Label, pt.Priority, pt.Tries, pt.Successful)
		}
	} else {
		w("slot: unknown (no /usr partition on the kernel command line)\n")
	}
	w("choices:\n")
	for _, c := range p.Choices {
		img := c.Image
		if img == "" {
			img = "(none)"
		}
		if c.Fallback != "" {
			img += " (else " + c.Fallback + ")"
		}
		if c.Protection != "" {
			img += " [" + c.Protection + "]"
		}
		w("  %-9s %-12s %s -> %s\n      %s\n", c.Kind, c.Name, c.Link, img, c.Reason)
	}
	w("actions:\n")
	if len(p.Actions) == 0 {
		w("  (none)\n")
	}
	for _, a := range p.Actions {
		w("  %s\n", a.describe())
	}
	for _, m := range p.Missing {
		w("missing: %s %s in %s\n", m.Kind, m.File, m.Dir)
	}
	for _, s := range p.Problems {
		w("problem: %s\n", s)
	}
	if p.Fatal != "" {
		w("fatal: %s\n", p.Fatal)
	}
	return string(b)
}

// root is the root the selection reads and changes: o.FS, else o.Root
// opened by fd (openRoot); the function returned closes what was opened.
func (o Options) root() (FS, func(), error) {
	if o.FS != nil {
		return o.FS, func() {}, nil
	}
	if openRoot == nil {
		return nil, nil, errors.New("abslots: no root access available")
	}
	r, err := openRoot(o.Root)
	if err != nil {
		return nil, nil, err
	}
	if c, ok := r.(io.Closer); ok {
		return r, func() { c.Close() }, nil
	}
	return r, func() {}, nil
}

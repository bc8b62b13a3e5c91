package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/ext-setup-root/ext-setup-root/boot"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// bootEngines builds the engines the boot verb drives; tests replace it.
var bootEngines = boot.RealEngines

// systemdVersion runs `TOOL --version` and parses its first line; tests
// replace it.
var systemdVersion = func(tool string) (int, error) {
	out, err := exec.Command(tool, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", tool, err)
	}
	return boot.ParseSystemdVersion(bytes.NewReader(out))
}

// execStock replaces this process with the stock systemd tool, so that the
// unit's journal shows the tool's own lines and exit status; tests replace
// it.
var execStock = func(argv []string) error {
	p, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	return syscall.Exec(p, argv, os.Environ())
}

// daemonReload runs `systemctl daemon-reload`; tests replace it.
var daemonReload = func() error {
	out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl daemon-reload: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// listFlag collects a repeatable, comma-separated flag.
type listFlag struct {
	v   []string
	set bool
}

func (l *listFlag) String() string { return strings.Join(l.v, ",") }
func (l *listFlag) Set(s string) error {
	l.set = true
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.v = append(l.v, p)
		}
	}
	return nil
}

func init() {
	register(command{
		name:    "boot",
		summary: "run an initrd stage: --stage=pre (confext merge) or --stage=post (A/B links, refresh, sysext)",
		run:     runBoot,
	})
}

// bootRoot is the --root of a boot stage: as given, else the sysroot in
// the initrd and / elsewhere.
func bootRoot(root string) string {
	switch {
	case root != "":
		return root
	case paths.InInitrd():
		return paths.Sysroot
	}
	return "/"
}

// readBootCmdline reads and parses the kernel command line
// (paths.ProcCmdline; none when it cannot be read, with a warning) and logs
// its problems. It returns the raw line too, for the engines.
func readBootCmdline(env *Env) (string, boot.Cmdline, error) {
	raw, err := os.ReadFile(paths.ProcCmdline)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		env.Log.Warnf("reading kernel command line %s: %v; using none", paths.ProcCmdline, err)
	}
	cl, err := boot.ParseCmdline(bytes.NewReader(raw))
	if err != nil {
		return "", cl, fmt.Errorf("parsing kernel command line %s: %w", paths.ProcCmdline, err)
	}
	for _, p := range cl.Problems {
		env.Log.Warnf("%s", p)
	}
	return string(raw), cl, nil
}

// applyEssentialFlags lets --essential and --essential-sysext, when given,
// replace boot.toml's lists (an empty --essential= makes nothing
// essential).
func applyEssentialFlags(o *boot.Options, essential, sysEssential listFlag) {
	if essential.set {
		o.Essential = essential.v
		if o.Essential == nil {
			o.Essential = []string{}
		}
	}
	if sysEssential.set {
		o.SysextEssential = sysEssential.v
	}
}

// flatcarLayout reports whether root has the Flatcar layout, whose default
// confext is then essential by name, as bootengine requires it; elsewhere
// the glob default only logs when no default confext is found. A root
// without os-release is simply not Flatcar; another error is logged.
func flatcarLayout(log *oplog.Logger, root string) bool {
	flatcar, err := boot.IsFlatcarRoot(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warnf("cannot tell whether %s has the Flatcar layout (its default confext would be essential by name): %v", root, err)
	}
	return flatcar
}

// runBoot is the verb the initrd units run. The kernel command line
// (paths.ProcCmdline) can disable stages, confexts and sysexts, turn on
// debug logging or a dry run; see docs/boot.md.
func runBoot(env *Env, args []string) error {
	fl := flag.NewFlagSet("boot", flag.ContinueOnError)
	fl.SetOutput(env.Stderr)
	stage := fl.String("stage", "", "stage to run: pre, post (initrd), late-confext or late-sysext (booted system, from the drop-ins)")
	root := fl.String("root", "", "target root (default "+paths.Sysroot+" in the initrd, / elsewhere)")
	dryRun := fl.Bool("dry-run", false, "log what would be done, change nothing")
	debug := fl.Bool("debug", false, "log debug messages")
	var essential, sysEssential listFlag
	fl.Var(&essential, "essential", "confext name patterns that must merge (default 00-*default*; repeatable, comma-separated)")
	fl.Var(&sysEssential, "essential-sysext", "sysext name patterns that must merge (default none)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err // usage already printed; main exits 0
		}
		return usagef("boot: %v", err)
	}
	if fl.NArg() != 0 {
		return usagef("boot: unexpected arguments %q", fl.Args())
	}
	st := boot.Stage(*stage)
	switch st {
	case boot.StagePre, boot.StagePost, boot.StageLateConfext, boot.StageLateSysext:
	default:
		return usagef("boot: --stage must be pre, post, late-confext or late-sysext, not %q", *stage)
	}
	*root = bootRoot(*root)
	raw, cl, err := readBootCmdline(env)
	if err != nil {
		return err
	}
	if *debug || cl.Debug {
		env.Log.SetDebug(true)
	}
	log := env.Log
	o := boot.Options{
		Stage:   st,
		Root:    *root,
		DryRun:  *dryRun || cl.DryRun,
		Cmdline: cl,
		RootOps: boot.RootDir{},
		Log:     log,
	}
	// Essential patterns: kernel command line (applied in boot.Run) >
	// flags > boot.toml in the root > the default.
	// Every stage applies boot.toml: the late stages need its image_policy
	// (the booted system's refresh must apply the policy the initrd merge
	// applied, or it would merge an image the initrd refused), the others
	// everything in it. All stages of a boot apply the file the pre stage
	// read before the merge (boot.LoadStageConfig), never a merged one.
	cfg, cerr := boot.LoadStageConfig(*root, st, !(*dryRun || cl.DryRun), log)
	if cerr != nil {
		log.Errorf("%v; ignoring the file, using the defaults (essential patterns, image policy, prepare step)", cerr)
		cfg = boot.DefaultConfig()
	} else if cfg.File != "" {
		log.Infof("using %s%s", strings.TrimSuffix(*root, "/"), cfg.File)
	}
	o.Essential, o.SysextEssential = cfg.EssentialConfexts, cfg.EssentialSysexts
	o.ImagePolicy = cfg.ImagePolicy
	// The effective policy text of every stage: the kernel command line's
	// ext-setup-root.image-policy= wins over boot.toml's image_policy.
	stagePolicy := cfg.ImagePolicy
	if cl.ImagePolicy != "" {
		stagePolicy = cl.ImagePolicy
	}
	applyEssentialFlags(&o, essential, sysEssential)
	o.Flatcar = (st == boot.StagePre || st == boot.StagePost) && flatcarLayout(log, *root)
	if st == boot.StagePre {
		o.Prep = boot.RealPreparer{Config: cfg.Prepare, Log: log, Getenv: env.Getenv, ImagePolicy: stagePolicy}
	}
	var engErr error
	o.Ext, o.Sel, engErr = bootEngines(env.Getenv, raw, log)
	// The post stage downloads missing images (boot.toml [fetch]).
	if s, ok := o.Sel.(boot.AbslotsSelector); ok && st == boot.StagePost && cfg.Fetch.Enabled {
		s.Fetcher = newFetcher(env, cfg.Fetch, raw, stagePolicy)
		o.Sel = s
	}
	// Where a stage's time goes before its first operation: the process
	// start and everything up to here (boot time, 10 ms resolution).
	if line, ok := startupReport(string(st), func() time.Duration { return mount.Kernel().ProbeTime }, sinceExec, initAt); ok {
		log.Infof("%s", line)
	}
	if st == boot.StageLateConfext || st == boot.StageLateSysext {
		return boot.RunLate(context.Background(), boot.LateOptions{
			Stage: st, Root: *root, Ext: o.Ext, Log: log, Mode: cl.LateRefresh,
			Cmdline: cl, DryRun: o.DryRun,
			SystemdVersion: systemdVersion, ExecStock: execStock, Reload: daemonReload,
			ImagePolicy: stagePolicy,
		})
	}
	if err = engErr; err != nil {
		return fmt.Errorf("boot --stage=%s: %w", st, err)
	}
	_, err = boot.Run(context.Background(), o)
	return err
}

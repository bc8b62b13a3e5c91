package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/boot"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// bootEngines builds the engines the boot verb drives; tests replace it.
var bootEngines = boot.RealEngines

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

// runBoot is the verb the initrd units run. The kernel command line
// (paths.ProcCmdline) can disable stages, confexts and sysexts, turn on
// debug logging or a dry run; see docs/boot.md.
func runBoot(env *Env, args []string) error {
	fl := flag.NewFlagSet("boot", flag.ContinueOnError)
	fl.SetOutput(env.Stderr)
	stage := fl.String("stage", "", "stage to run: pre or post")
	root := fl.String("root", "", "target root (default "+paths.Sysroot+" in the initrd, / elsewhere)")
	dryRun := fl.Bool("dry-run", false, "log what would be done, change nothing")
	debug := fl.Bool("debug", false, "log debug messages")
	var essential, sysEssential listFlag
	fl.Var(&essential, "essential", "confext name patterns that must merge (default 00-*default*; repeatable, comma-separated)")
	fl.Var(&sysEssential, "essential-sysext", "sysext name patterns that must merge (default none)")
	if err := fl.Parse(args); err != nil {
		return usagef("boot: %v", err)
	}
	if fl.NArg() != 0 {
		return usagef("boot: unexpected arguments %q", fl.Args())
	}
	st := boot.Stage(*stage)
	if st != boot.StagePre && st != boot.StagePost {
		return usagef("boot: --stage must be pre or post, not %q", *stage)
	}
	if *root == "" {
		*root = "/"
		if paths.InInitrd() {
			*root = paths.Sysroot
		}
	}
	raw, err := os.ReadFile(paths.ProcCmdline)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		env.Log.Warnf("reading kernel command line %s: %v; using none", paths.ProcCmdline, err)
	}
	cl, err := boot.ParseCmdline(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("parsing kernel command line %s: %w", paths.ProcCmdline, err)
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
	if essential.set {
		o.Essential = essential.v
		if o.Essential == nil {
			o.Essential = []string{}
		}
	}
	o.SysextEssential = sysEssential.v
	o.Ext, o.Sel, err = bootEngines(env.Getenv, string(raw), log)
	if err != nil {
		return fmt.Errorf("boot --stage=%s: %w", st, err)
	}
	_, err = boot.Run(context.Background(), o)
	return err
}

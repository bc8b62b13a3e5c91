package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/boot"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/paths"
	"github.com/ext-setup-root/ext-setup-root/prepare"
)

// abslotsCmd holds the flags shared by `links` and `plan`.
type abslotsCmd struct {
	root   string
	dryRun bool
	json   bool
	config string
	// osVersion and usr pick the version to plan or fetch for (plan,
	// fetch): before an update, the next boot's.
	osVersion string
	usr       string
}

func (c *abslotsCmd) parse(env *Env, name string, args []string, plan bool) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	def := "/"
	if paths.InInitrd() {
		def = paths.Sysroot
	}
	fs.StringVar(&c.root, "root", def, "target root (an unpacked tree works offline)")
	fs.StringVar(&c.config, "config", "", "TOML layout file on the host, instead of the config search inside the root")
	if name != "links" {
		fs.StringVar(&c.osVersion, "os-version", "", "plan for this OS version instead of the root's os-release (before an update)")
		fs.StringVar(&c.usr, "usr", "", "plan for the OS version on the /usr partition with this GPT partition label (e.g. USR-B)")
	}
	if plan {
		fs.BoolVar(&c.json, "json", false, "print the plan as JSON")
	} else if name == "links" {
		fs.BoolVar(&c.dryRun, "dry-run", false, "log what would change, change nothing")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", name, err)
	}
	if fs.NArg() != 0 {
		return usagef("%s takes no arguments, got %q", name, strings.Join(fs.Args(), " "))
	}
	return nil
}

func (c *abslotsCmd) options(env *Env, cmdline io.Reader) abslots.Options {
	return abslots.Options{Root: c.root, DryRun: c.dryRun, ConfigFile: c.config, Log: env.Log, Getenv: env.Getenv, Cmdline: cmdline}
}

func init() {
	register(command{
		name:    "links",
		summary: "select A/B extension images for the booted slot and set the active links",
		run: func(env *Env, args []string) error {
			c := &abslotsCmd{}
			if err := c.parse(env, "links", args, false); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return nil
				}
				return err
			}
			_, err := abslots.Run(context.Background(), c.options(env, nil))
			if errors.Is(err, abslots.ErrDisabled) {
				return nil
			}
			return err
		},
	})
	register(command{
		name:    "plan",
		summary: "print the A/B image selection (slot, version, choices, moves, links) without changing anything",
		run: func(env *Env, args []string) error {
			c := &abslotsCmd{}
			var err error
			if err = c.parse(env, "plan", args, true); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return nil
				}
				return err
			}
			c.dryRun = true
			o := c.options(env, nil)
			o.Log = nil // the plan itself is the output
			if o.OSVersion, err = targetVersion(c.osVersion, c.usr, "VERSION"); err != nil {
				return err
			}
			p, err := abslots.Run(context.Background(), o)
			if errors.Is(err, abslots.ErrDisabled) {
				fmt.Fprintln(env.Stdout, "abslots disabled by ext-setup-root.abslots=0")
				return nil
			}
			if p == nil {
				return err
			}
			if c.json {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(p); jerr != nil {
					return jerr
				}
			} else {
				fmt.Fprint(env.Stdout, p.String())
				// The pre stage's prepare step, as a dry run.
				if res, perr := planPrepare(c.root); perr != nil {
					fmt.Fprintf(env.Stdout, "prepare: cannot plan: %v\n", perr)
				} else if res != nil {
					fmt.Fprint(env.Stdout, res.String())
				}
			}
			return err
		},
	})
}

// readCmdlineFile reads the kernel command line (paths.ProcCmdline),
// bounded; "" when there is none.
func readCmdlineFile() (string, error) {
	f, err := os.Open(paths.ProcCmdline)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, kcmdline.MaxSize))
	return string(b), err
}

// planPrepare computes what the pre stage's prepare step would do in
// root, with the root's boot.toml; nil when it is disabled.
func planPrepare(root string) (*prepare.Result, error) {
	cfg, err := boot.LoadConfig(root)
	if err != nil {
		return nil, err
	}
	if !cfg.Prepare.Enabled {
		return nil, nil
	}
	// The same preparer as the pre stage's, so that the dedup plans
	// against the confexts the merge would use.
	essential := boot.DefaultEssential
	if cfg.EssentialConfexts != nil {
		essential = cfg.EssentialConfexts
	}
	p := boot.RealPreparer{Config: cfg.Prepare, Getenv: os.Getenv, ImagePolicy: cfg.ImagePolicy}
	return p.Prepare(context.Background(), boot.PrepareRequest{Root: root, DryRun: true, Essential: essential})
}

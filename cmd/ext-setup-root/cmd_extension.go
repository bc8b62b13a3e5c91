package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/extension"
)

// The confext and sysext verbs take systemd-confext/systemd-sysext's
// options and verbs, so users and scripts already know them.
func init() {
	register(command{name: "confext", summary: "merge configuration extensions into /etc (systemd-confext verbs)",
		run: func(env *Env, args []string) error { return runExtension(env, extension.Confext, args) }})
	register(command{name: "sysext", summary: "merge system extensions into /usr and /opt (systemd-sysext verbs)",
		run: func(env *Env, args []string) error { return runExtension(env, extension.Sysext, args) }})
}

// parseBool parses a systemd-style boolean option value.
func parseBool(s string) (bool, error) {
	if v, ok := extension.ParseBoolean(s); ok {
		return v, nil
	}
	return false, fmt.Errorf("invalid boolean %q", s)
}

func runExtension(env *Env, cls *extension.Class, args []string) error {
	fs := flag.NewFlagSet(cls.Name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	root := fs.String("root", "", "operate relative to root `PATH`")
	mutable := fs.String("mutable", "", "mutability `MODE` (yes, no, auto, import, ephemeral, ephemeral-import)")
	force := fs.Bool("force", false, "ignore version incompatibilities")
	always := fs.String("always-refresh", "no", "refresh even when no change was found (`BOOL`)")
	noReload := fs.Bool("no-reload", false, "do not reload the service manager (always the case)")
	noexec := fs.String("noexec", "", "mount the overlay noexec (`BOOL`); default per class")
	jsonMode := fs.String("json", "off", "output format for status and list: pretty, short, off")
	noBeneath := fs.Bool("no-beneath", false, "replace merges by unmount-then-mount (gap) instead of mounting beneath")
	var essential multiFlag
	fs.Var(&essential, "essential", "image name `PATTERN` that must not be skipped (repeatable)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err // usage already printed; main exits 0
		}
		return usagef("%v", err)
	}
	opt := extension.Options{
		Root: *root, Class: cls, Force: *force, NoReload: *noReload, NoBeneath: *noBeneath,
		Getenv: env.Getenv, Log: env.Log, Info: env.Stderr, Essential: essential,
	}
	if *mutable != "" {
		if *mutable == "help" {
			fmt.Fprintln(env.Stdout, "Known mutability modes:\nno\nyes\nauto\nimport\nephemeral\nephemeral-import")
			return nil
		}
		opt.Mutable = *mutable
	}
	a, err := parseBool(*always)
	if err != nil {
		return usagef("--always-refresh: %v", err)
	}
	opt.AlwaysRefresh = a
	if *noexec != "" {
		v, err := parseBool(*noexec)
		if err != nil {
			return usagef("--noexec: %v", err)
		}
		opt.Noexec = &v
	}
	switch *jsonMode {
	case "off", "short", "pretty":
	default:
		return usagef("--json: unknown format %q (pretty, short, off)", *jsonMode)
	}
	verb := "status"
	if fs.NArg() > 1 {
		return usagef("too many arguments")
	}
	if fs.NArg() == 1 {
		verb = fs.Arg(0)
	}
	ctx := context.Background()
	switch verb {
	case "merge":
		_, err = extension.Merge(ctx, opt)
	case "refresh":
		_, err = extension.Refresh(ctx, opt)
	case "unmerge":
		_, err = extension.Unmerge(ctx, opt)
	case "status":
		rows, serr := extension.Status(ctx, opt)
		if serr != nil {
			return serr
		}
		return extension.WriteStatus(env.Stdout, rows, *jsonMode)
	case "list":
		imgs, lerr := extension.List(ctx, opt)
		if lerr != nil {
			return lerr
		}
		if len(imgs) == 0 && *jsonMode == "off" {
			fmt.Fprintln(env.Stderr, "No OS extensions found.")
			return nil
		}
		return extension.WriteList(env.Stdout, imgs, *jsonMode)
	default:
		return usagef("unknown %s verb %q (merge, unmerge, refresh, status, list)", cls.Name, verb)
	}
	return err
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strconv.Quote(strings.Join(*m, ",")) }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/extension"
	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
)

// The confext and sysext verbs take systemd-confext/systemd-sysext's
// options and verbs, so users and scripts already know them.
func init() {
	register(command{name: "confext", summary: "merge configuration extensions into /etc (systemd-confext verbs)",
		run: func(env *Env, args []string) error { return runExtension(env, config.Confext, args) }})
	register(command{name: "sysext", summary: "merge system extensions into /usr and /opt (systemd-sysext verbs)",
		run: func(env *Env, args []string) error { return runExtension(env, config.Sysext, args) }})
}

// parseBool parses a systemd-style boolean option value.
func parseBool(s string) (bool, error) {
	if v, ok := kcmdline.ParseBool(s); ok {
		return v, nil
	}
	return false, fmt.Errorf("invalid boolean %q", s)
}

// extensionOptions are systemd-confext/systemd-sysext 262's options (every
// one its --help lists) plus ours (--essential, --no-beneath).
type extensionOptions struct {
	help, version, force, noReload, noPager, noLegend, noBeneath bool
	root, mutable, imagePolicy, always, noexec                   string
	json                                                         string
	essential                                                    []string
}

func (o *extensionOptions) specs() []option {
	flag := func(p *bool) func(string) error { return func(string) error { *p = true; return nil } }
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	return []option{
		{long: "help", short: 'h', set: flag(&o.help), help: "Show this help"},
		{long: "version", set: flag(&o.version), help: "Show package version"},
		{long: "root", arg: true, meta: "PATH", set: str(&o.root), help: "Operate relative to root PATH"},
		{long: "mutable", arg: true, meta: "MODE", set: str(&o.mutable), help: "Specify a mutability mode (yes, no, auto, import, ephemeral, ephemeral-import, help)"},
		{long: "image-policy", arg: true, meta: "POLICY", set: str(&o.imagePolicy), help: "Specify disk image dissection policy"},
		{long: "noexec", arg: true, meta: "BOOL", set: str(&o.noexec), help: "Whether to mount extension overlay with noexec"},
		{long: "force", set: flag(&o.force), help: "Ignore version incompatibilities"},
		{long: "no-reload", set: flag(&o.noReload), help: "Do not reload the service manager (never done)"},
		{long: "always-refresh", arg: true, meta: "BOOL", set: str(&o.always), help: "Whether to refresh when no changes were found"},
		{long: "no-pager", set: flag(&o.noPager), help: "Do not start a pager (never started)"},
		{long: "no-legend", set: flag(&o.noLegend), help: "Do not show headers and footers"},
		{long: "json", arg: true, meta: "FORMAT", set: str(&o.json), help: "Generate JSON output (pretty, short, or off)"},
		{long: "essential", arg: true, meta: "PATTERN", set: func(v string) error { o.essential = append(o.essential, v); return nil },
			help: "Fail if an image matching PATTERN cannot be merged (repeatable; ext-setup-root)"},
		{long: "no-beneath", set: flag(&o.noBeneath), help: "Replace merges by unmount-then-mount, with a gap (ext-setup-root)"},
	}
}

func extensionUsage(cls *config.Class, specs []option) string {
	what := "system extension images into /usr/ and /opt/"
	if cls == config.Confext {
		what = "configuration extension images into /etc/"
	}
	return fmt.Sprintf(`ext-setup-root %s [OPTION...] COMMAND ...

Merge %s (the verbs and options of systemd-%s;
options may come before or after the command, -- ends them).

Commands:
  [status]                    Show current merge status (default)
  merge                       Merge extensions into relevant hierarchies
  unmerge                     Unmerge extensions from relevant hierarchies
  refresh                     Unmerge/merge extensions again
  list                        List installed extensions

Options:
%s`, cls.Name, what, cls.Name, optionsUsage(specs))
}

func runExtension(env *Env, cls *config.Class, args []string) error {
	o := &extensionOptions{always: "no", json: "off"}
	specs := o.specs()
	pos, err := parseOptions(args, specs)
	if err != nil {
		return err
	}
	if o.help {
		_, err := fmt.Fprint(env.Stdout, extensionUsage(cls, specs))
		return err
	}
	if o.version {
		_, err := fmt.Fprintf(env.Stdout, "ext-setup-root %s\n", version)
		return err
	}
	opt := extension.Options{
		Root: o.root, Class: cls, Force: o.force, NoReload: o.noReload, NoBeneath: o.noBeneath,
		Getenv: env.Getenv, Log: env.Log, Info: env.Stderr, Essential: o.essential,
	}
	if o.mutable != "" {
		if o.mutable == "help" {
			fmt.Fprintln(env.Stdout, "Known mutability modes:\nno\nyes\nauto\nimport\nephemeral\nephemeral-import")
			return nil
		}
		opt.Mutable = o.mutable
	}
	if o.imagePolicy != "" {
		p, err := image.ParsePolicy(o.imagePolicy)
		if err != nil {
			return usagef("--image-policy: %v", err)
		}
		opt.ImagePolicy = p
	}
	a, err := parseBool(o.always)
	if err != nil {
		return usagef("--always-refresh: %v", err)
	}
	opt.AlwaysRefresh = a
	if o.noexec != "" {
		v, err := parseBool(o.noexec)
		if err != nil {
			return usagef("--noexec: %v", err)
		}
		opt.Noexec = &v
	}
	switch o.json {
	case "off", "short", "pretty":
	default:
		return usagef("--json: unknown format %q (pretty, short, off)", o.json)
	}
	verb := "status"
	if len(pos) > 1 {
		return usagef("too many arguments: %q", pos)
	}
	if len(pos) == 1 {
		verb = pos[0]
	}
	out := env.Stdout
	if o.noLegend && o.json == "off" {
		out = &skipFirstLine{w: env.Stdout}
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
		return extension.WriteStatus(out, rows, o.json)
	case "list":
		imgs, lerr := extension.List(ctx, opt)
		if lerr != nil {
			return lerr
		}
		if len(imgs) == 0 && o.json == "off" {
			if !o.noLegend {
				fmt.Fprintln(env.Stderr, "No OS extensions found.")
			}
			return nil
		}
		return extension.WriteList(out, imgs, o.json)
	default:
		return usagef("unknown %s verb %q (merge, unmerge, refresh, status, list)", cls.Name, verb)
	}
	return err
}

// skipFirstLine drops the table's header line (--no-legend).
type skipFirstLine struct {
	w    io.Writer
	past bool
}

func (s *skipFirstLine) Write(p []byte) (int, error) {
	n := len(p)
	if !s.past {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return n, nil
		}
		s.past, p = true, p[i+1:]
	}
	if _, err := s.w.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strconv.Quote(strings.Join(*m, ",")) }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

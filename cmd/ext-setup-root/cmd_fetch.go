package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/boot"
	"github.com/ext-setup-root/ext-setup-root/fetch"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// newFetcher builds the fetcher of the post stage and the fetch verb from
// boot.toml's [fetch] table, the kernel command line (the server
// override) and the effective image policy; in the initrd it starts the
// network units before the first download, as Flatcar does.
func newFetcher(env *Env, cfg fetch.Config, cmdline, imagePolicy string) *fetch.Fetcher {
	f := &fetch.Fetcher{Config: cfg, Cmdline: kcmdline.ParseString(cmdline), Log: env.Log, Getenv: env.Getenv, ImagePolicy: imagePolicy}
	if paths.InInitrd() {
		f.Network = fetch.StartNetwork
	}
	return f
}

// targetVersion resolves --os-version and --usr: the version to plan or
// fetch for ("" for the root's own).
func targetVersion(osVersion, usr, versionKey string) (string, error) {
	switch {
	case osVersion != "" && usr != "":
		return "", usagef("--os-version and --usr exclude each other")
	case usr != "":
		return fetch.VersionOfUsrPartition(paths.DevDir, usr, versionKey)
	}
	return osVersion, nil
}

func init() {
	register(command{
		name:    "fetch",
		summary: "download and verify the extension images a version needs and no store holds, without changing links (before an update: --os-version= or --usr=PARTLABEL)",
		run:     runFetch,
	})
}

func runFetch(env *Env, args []string) error {
	c := &abslotsCmd{}
	if err := c.parse(env, "fetch", args, false); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	bcfg, err := boot.LoadConfig(c.root)
	if err != nil {
		return err
	}
	if !bcfg.Fetch.Enabled {
		return fmt.Errorf("fetch: disabled in boot.toml ([fetch] enabled = false)")
	}
	ver, err := targetVersion(c.osVersion, c.usr, "VERSION")
	if err != nil {
		return err
	}
	raw, _ := readCmdlineFile()
	o := c.options(env, nil)
	o.OSVersion = ver
	o.Fetcher = newFetcher(env, bcfg.Fetch, raw, bcfg.ImagePolicy)
	p, err := abslots.Fetch(context.Background(), o)
	if p != nil {
		for _, m := range p.Missing {
			fmt.Fprintf(env.Stdout, "missing: %s %s in %s\n", m.Kind, m.File, m.Dir)
		}
		if len(p.Missing) == 0 && err == nil {
			fmt.Fprintf(env.Stdout, "every image for %s is present\n", strings.TrimSpace(p.Version))
		}
	}
	return err
}

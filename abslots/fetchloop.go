package abslots

import (
	"context"
	"errors"
	"fmt"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// fetchMissing asks fetcher for every missing image of plan. A failed
// fetch of an essential image is returned (after the others were tried);
// an optional one is one error line.
func fetchMissing(ctx context.Context, fetcher Fetcher, root FS, plan *Plan, log *oplog.Logger) error {
	var errs []error
	for _, m := range plan.Missing {
		op := log.Op("fetch %s image %s into %s", m.Kind, m.File, m.Dir)
		err := op.Finish(fetcher.Fetch(ctx, root, m))
		if err == nil {
			continue
		}
		if fetcher.Essential(m) {
			errs = append(errs, fmt.Errorf("essential %s image %s could not be fetched: %w", m.Kind, m.File, err))
			continue
		}
		log.Errorf("abslots: optional %s image %s not fetched, boot goes on without it: %v", m.Kind, m.File, err)
	}
	return errors.Join(errs...)
}

// gather is Gather with the version replaced by osVersion when set.
func gather(root FS, cfg *Config, osVersion string) *Facts {
	f := Gather(root, cfg)
	if osVersion != "" {
		if err := checkName(cfg.VersionKey, osVersion, "--os-version"); err != nil {
			f.problem(errText(err))
			f.Version = ""
		} else {
			f.Version, f.VersionSource = osVersion, "--os-version"
		}
	}
	return f
}

// Fetch makes the plan (for o.OSVersion when set) and fetches every
// missing image without changing any link: run before an update, so that
// the next boot finds its images and needs no network. The plan after the
// fetches is returned; an essential image that could not be fetched is an
// error.
func Fetch(ctx context.Context, o Options) (*Plan, error) {
	log := o.Log
	if log == nil {
		log = oplog.Discard()
	}
	if o.Fetcher == nil {
		return nil, errors.New("abslots: no fetcher")
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
	plan := MakePlan(cfg, gather(root, cfg, o.OSVersion))
	for _, s := range plan.Problems {
		log.Warnf("abslots: %s", s)
	}
	if len(plan.Missing) == 0 {
		log.Infof("abslots: every image for %s %s is present; nothing to fetch", cfg.VersionKey, plan.Version)
		return plan, nil
	}
	ferr := fetchMissing(ctx, o.Fetcher, root, plan, log)
	return MakePlan(cfg, gather(root, cfg, o.OSVersion)), ferr
}

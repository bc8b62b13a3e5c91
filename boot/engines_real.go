package boot

import (
	"context"
	"errors"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// ErrEnginesUnavailable is returned by RealEngines while the extension
// engine is not part of the build.
var ErrEnginesUnavailable = errors.New("extension engine not wired into this build")

// AbslotsSelector is the Selector backed by the abslots engine.
type AbslotsSelector struct {
	Getenv  func(string) string
	Cmdline string // kernel command line contents
	Log     *oplog.Logger
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
	})
	if errors.Is(err, abslots.ErrDisabled) {
		return SelectResult{}, nil
	}
	var r SelectResult
	if plan != nil {
		r.Changes = len(plan.Actions)
	}
	return r, err
}

// RealEngines returns the production extension engine and A/B selector,
// configured with getenv (for SYSTEMD_*_MUTABLE_MODE and friends), the
// kernel command line and log.
func RealEngines(getenv func(string) string, cmdline string, log *oplog.Logger) (Extensions, Selector, error) {
	return nil, AbslotsSelector{Getenv: getenv, Cmdline: cmdline, Log: log}, ErrEnginesUnavailable
}

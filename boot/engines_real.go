package boot

import (
	"errors"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// ErrEnginesUnavailable is returned by RealEngines while the extension or
// abslots engine is not part of the build.
var ErrEnginesUnavailable = errors.New("extension/abslots engines not wired into this build")

// RealEngines returns the production extension engine and A/B selector,
// configured with getenv (for SYSTEMD_*_MUTABLE_MODE and friends), the
// kernel command line and log.
func RealEngines(getenv func(string) string, cmdline string, log *oplog.Logger) (Extensions, Selector, error) {
	return nil, nil, ErrEnginesUnavailable
}

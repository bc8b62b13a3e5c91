package extension

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
)

// discover is DiscoverAll for the engine's class and root, with every
// skipped entry logged: problems as warnings, the rest at debug level.
func (e *engine) discover() ([]discover.Image, error) {
	imgs, skipped, err := discover.DiscoverAll(e.rfs, e.cls, e.initrd)
	for _, s := range skipped {
		if s.Problem {
			e.log.Warnf("%s: skipped %s: %s", e.cls.Name, logSafe(e.display(s.Path)), s.Reason)
		} else {
			e.log.Debugf("%s: skipped %s: %s", e.cls.Name, logSafe(e.display(s.Path)), s.Reason)
		}
	}
	return imgs, err
}

// logSafe quotes a path read from disk that holds control characters or
// invalid UTF-8, so that a file name with a newline cannot forge a log
// line (found by the adversarial-root tests).
func logSafe(p string) string {
	if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
		return strconv.Quote(p)
	}
	return p
}

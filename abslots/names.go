package abslots

import (
	"fmt"
	"strings"
)

// checkName rejects values from disk that would change the meaning of a
// path when put into a file name pattern: empty, "." or "..", '/', NUL and
// control characters. what and source go into the error so the user knows
// which file to fix.
func checkName(what, v, source string) error {
	bad := ""
	switch {
	case v == "":
		bad = "is empty"
	case v == "." || v == ".." || strings.Contains(v, ".."):
		bad = `contains ".."`
	case strings.Contains(v, "/"):
		bad = `contains "/"`
	default:
		for _, r := range v {
			if r == 0 || r < 0x20 || r == 0x7f {
				bad = "contains a control character"
				break
			}
		}
	}
	if bad != "" {
		return fmt.Errorf("%s: %s %q %s (not allowed in a file name)", source, what, v, bad)
	}
	return nil
}

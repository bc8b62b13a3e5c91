package boot

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// EssentialError reports an essential image that was skipped or not found.
type EssentialError struct {
	Class   Class
	Pattern string
	Name    string // empty when nothing matched a literal pattern
	Reason  string
}

// Error names the class, the pattern and, when an image matched it, the
// image and why it was not merged.
func (e *EssentialError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("essential %s %q not found", e.Class, e.Pattern)
	}
	return fmt.Sprintf("essential %s %s (matches %q) not merged: %s", e.Class, e.Name, e.Pattern, e.Reason)
}

// checkEssential fails when a skipped image matches an essential pattern,
// or when a literal pattern (no glob characters) names no merged image.
// Glob patterns that match nothing are fine, so that the default pattern
// costs nothing on systems without a vendor default confext.
func checkEssential(c Class, patterns []string, res ExtResult) error {
	for _, p := range patterns {
		for _, sk := range res.Skipped {
			if ok, _ := path.Match(p, sk.Name); ok {
				return &EssentialError{Class: c, Pattern: p, Name: sk.Name, Reason: sk.Reason}
			}
		}
		if !strings.ContainsAny(p, `*?[\`) && !slices.Contains(res.Merged, p) {
			return &EssentialError{Class: c, Pattern: p}
		}
	}
	return nil
}

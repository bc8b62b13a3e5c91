package vpick

import (
	"github.com/ext-setup-root/ext-setup-root/release"

	"cmp"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// NoTries marks an entry without a "+LEFT[-DONE]" boot-counting suffix.
// Like systemd's UINT_MAX it sorts as "more tries left than any number".
const NoTries = -1

// Filter describes what to look for inside a ".v/" directory: entries named
// BASENAME_VERSION[_ARCH][+LEFT[-DONE]]SUFFIX (systemd.v(7)).
type Filter struct {
	// Basename is the image name; entries must start with Basename + "_".
	// Empty accepts any name (the version is then the whole stem).
	Basename string
	// Suffix every entry must end with, e.g. ".raw"; may be empty.
	Suffix string
	// Arch restricts entries to one systemd architecture name. Empty means
	// the local ones in order of preference: the native architecture, its
	// secondary (x86 on x86-64), then entries without an architecture.
	Arch string
}

// Result is the chosen entry.
type Result struct {
	// Name is the file name inside the directory.
	Name string
	// Version is the version part; Arch the architecture part ("" if none).
	Version, Arch string
	// TriesLeft and TriesDone are the boot counters, NoTries if absent.
	TriesLeft, TriesDone int
}

// LocalArchitectures returns the architectures this binary prefers, best
// first, as systemd's native_architecture() and ARCHITECTURE_SECONDARY do
// for the architecture it was compiled for (release.Arches). The final ""
// stands for entries without (or with an unknown) architecture.
func LocalArchitectures() []string {
	native := release.NativeArchitecture()
	if native == "" {
		return []string{""}
	}
	if sec := release.SecondaryArchitecture(native); sec != "" {
		return []string{native, sec, ""}
	}
	return []string{native, ""}
}

// VersionIsValid reports whether s may be a version in a file name, as
// systemd's version_is_valid(): not empty, a valid file name part, and only
// letters, digits and ".,_-+".
func VersionIsValid(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && !isAlpha(c) && !strings.ContainsRune(".,_-+", rune(c)) {
			return false
		}
	}
	return true
}

// parseTries parses "+LEFT" or "+LEFT-DONE" (digits only).
func parseTries(s string) (left, done int, ok bool) {
	rest, found := strings.CutPrefix(s, "+")
	if !found {
		return 0, 0, false
	}
	l, d, hasDone := strings.Cut(rest, "-")
	if !allDigits(l) || (hasDone && !allDigits(d)) {
		return 0, 0, false
	}
	var err error
	if left, err = strconv.Atoi(l); err != nil || left > 1<<31 {
		return 0, 0, false
	}
	if hasDone {
		if done, err = strconv.Atoi(d); err != nil || done > 1<<31 {
			return 0, 0, false
		}
	}
	return left, done, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

type candidate struct {
	Result
	archIndex int
}

// parse matches one directory entry against the filter, returning false
// for entries systemd ignores.
func (f Filter) parse(name string, archs []string) (candidate, bool) {
	e := name
	if f.Basename != "" {
		rest, ok := strings.CutPrefix(e, f.Basename+"_")
		if !ok {
			return candidate{}, false
		}
		e = rest
	}
	if f.Suffix != "" {
		stem, ok := strings.CutSuffix(e, f.Suffix)
		if !ok {
			return candidate{}, false
		}
		e = stem
	}
	c := candidate{Result: Result{Name: name, TriesLeft: NoTries, TriesDone: NoTries}}
	if plus := strings.LastIndexByte(e, '+'); plus >= 0 {
		if left, done, ok := parseTries(e[plus:]); ok {
			c.TriesLeft, c.TriesDone = left, done
			e = e[:plus]
		}
	}
	arch := ""
	under := strings.LastIndexByte(e, '_')
	if under >= 0 && release.IsArchitecture(e[under+1:]) {
		arch = e[under+1:]
	}
	c.archIndex = -1
	for i, a := range archs {
		if a == arch {
			c.archIndex = i
			break
		}
	}
	if c.archIndex < 0 {
		return candidate{}, false
	}
	// systemd chops at the last '_' even when what follows is not an
	// architecture name, so "foo_1_2.raw" has version "1".
	if under >= 0 {
		e = e[:under]
	}
	if !VersionIsValid(e) {
		return candidate{}, false
	}
	c.Version, c.Arch = e, arch
	return c, true
}

// better reports whether c beats best, in systemd's order: entries with
// tries left (or no counter) first, then newer version, then the more
// preferred architecture, then more tries left, then fewer tries done,
// then the larger file name.
func (c candidate) better(best candidate) bool {
	d := cmpBool(c.TriesLeft != 0, best.TriesLeft != 0)
	if d == 0 {
		d = StrverscmpImproved(c.Version, best.Version)
	}
	if d == 0 {
		d = -cmp.Compare(c.archIndex, best.archIndex)
	}
	if d == 0 {
		d = cmp.Compare(triesValue(c.TriesLeft), triesValue(best.TriesLeft))
	}
	if d == 0 {
		d = -cmp.Compare(triesValue(c.TriesDone), triesValue(best.TriesDone))
	}
	if d == 0 {
		d = cmp.Compare(c.Name, best.Name)
	}
	return d >= 0
}

// triesValue maps NoTries to "larger than any counter", like UINT_MAX.
func triesValue(n int) int {
	if n == NoTries {
		return 1 << 62
	}
	return n
}

// PickNames chooses among directory entry names; ok is false if none
// matches. Entries whose tries-left counter reached 0 are chosen only when
// nothing else matches, exactly as systemd deprioritises them.
func PickNames(names []string, f Filter) (Result, bool) {
	archs := LocalArchitectures()
	if f.Arch != "" {
		archs = []string{f.Arch}
	}
	var best candidate
	found := false
	for _, n := range names {
		c, ok := f.parse(n, archs)
		if !ok {
			continue
		}
		if !found || c.better(best) {
			best, found = c, true
		}
	}
	return best.Result, found
}

// Pick reads the directory dir (already resolved and opened by the caller,
// inside the target root) and chooses an entry with PickNames. The caller
// checks the chosen entry's type, as systemd refuses a pick of the wrong
// type instead of falling back to another entry.
func Pick(dir *os.File, f Filter) (Result, bool, error) {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return Result{}, false, fmt.Errorf("read versioned directory %s: %w", dir.Name(), err)
	}
	r, ok := PickNames(names, f)
	return r, ok, nil
}

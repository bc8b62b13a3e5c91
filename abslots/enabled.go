package abslots

import (
	"bufio"
	"io"
	"strings"
)

// EnabledName is one extension name from an enabled list, with the file it
// came from (for errors and the plan's reasons).
type EnabledName struct {
	Name   string `json:"name"`
	Source string `json:"source"`
}

// EnabledList is the parsed content of the enabled-sysext.conf files.
type EnabledList struct {
	// Names in first-seen order, duplicates and opt-outs removed.
	Names []EnabledName `json:"names"`
	// Optouts are "-NAME" entries from the opt-out files.
	Optouts []EnabledName `json:"optouts,omitempty"`
}

// parseEnabled reads one enabled list: one or more names per line, "#"
// starting a comment anywhere in a line, "-NAME" opting NAME out. It returns
// names and opt-outs in file order; the caller merges files.
//
// Flatcar's script splits the comment-stripped text on white space, so
// "a b" enables two names; opt-outs are matched against whole raw lines
// there, which makes "-a # why" ineffective; here comments and white space
// are stripped from opt-outs too (documented difference).
func parseEnabled(r io.Reader) (names, optouts []string, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		for _, w := range strings.Fields(line) {
			if strings.HasPrefix(w, "-") {
				optouts = append(optouts, w[1:])
				continue
			}
			names = append(names, w)
		}
	}
	return names, optouts, sc.Err()
}

// mergeEnabled combines the lists: names from all files in order, without
// duplicates, minus names opted out in an opt-out file. A "-NAME" in a file
// that is not an opt-out file only disables nothing (as in Flatcar, where
// only /etc may opt out of names enabled by /usr).
func mergeEnabled(files []enabledFile, enabledFiles, optoutFiles []string) EnabledList {
	isOptout, isEnabled := map[string]bool{}, map[string]bool{}
	for _, f := range optoutFiles {
		isOptout[f] = true
	}
	for _, f := range enabledFiles {
		isEnabled[f] = true
	}
	out := map[string]bool{}
	var l EnabledList
	for _, f := range files {
		if !isOptout[f.Source] {
			continue
		}
		for _, n := range f.Optouts {
			if !out[n] {
				out[n] = true
				l.Optouts = append(l.Optouts, EnabledName{n, f.Source})
			}
		}
	}
	seen := map[string]bool{}
	for _, f := range files {
		if !isEnabled[f.Source] {
			continue
		}
		for _, n := range f.Names {
			if seen[n] || out[n] {
				continue
			}
			seen[n] = true
			l.Names = append(l.Names, EnabledName{n, f.Source})
		}
	}
	return l
}

// enabledFile is one parsed enabled list.
type enabledFile struct {
	Source  string
	Names   []string
	Optouts []string
}

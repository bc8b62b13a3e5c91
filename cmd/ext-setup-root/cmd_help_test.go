package main

import (
	"sort"
	"strings"
	"testing"
)

// TestVerbHelpExitsZero checks that `VERB --help` of every registered verb
// prints the verb's usage and exits 0: asking for help is not a usage
// error, and scripts probing options must not see exit 2.
func TestVerbHelpExitsZero(t *testing.T) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, arg := range []string{"--help", "-h"} {
			t.Run(name+arg, func(t *testing.T) {
				env, out, errb := testEnv()
				err := run(env, []string{name, arg})
				if c := exitCode(err); c != 0 {
					t.Fatalf("%s %s: exit %d (%v), want 0", name, arg, c, err)
				}
				usage := out.String() + errb.String()
				// every verb but version operates on a root and says so.
				// flag's "Usage of VERB" or, for the systemd-style verbs,
				// "ext-setup-root VERB [OPTION...]".
				if !(strings.Contains(usage, "Usage of "+name) || strings.Contains(usage, "ext-setup-root "+name+" [OPTION")) || (name != "version" && !strings.Contains(usage, "-root")) {
					t.Errorf("%s %s: no usage printed, got %q", name, arg, usage)
				}
			})
		}
	}
}

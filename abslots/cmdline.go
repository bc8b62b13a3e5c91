package abslots

import (
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
)

// Cmdline is the parsed kernel command line (the module's one parser,
// internal/kcmdline: '-' and '_' in keys alike, the last occurrence wins).
type Cmdline = *kcmdline.Cmdline

// ParseCmdline parses a kernel command line from s; the readers of
// /proc/cmdline go through readCmdline.
func ParseCmdline(s string) Cmdline { return kcmdline.ParseString(s) }

// switchesFrom reads the abslots kernel command line switches; a switch
// whose value is not a boolean keeps its default and is returned in
// problems for the log.
func switchesFrom(c Cmdline) (sw Switches, problems []string) {
	flag := func(def bool, key string) bool {
		v, err := c.Bool(def, key)
		if err != nil {
			problems = append(problems, err.Error())
		}
		return v
	}
	sw.Disabled = !flag(true, "ext-setup-root.abslots")
	sw.DryRun = flag(false, "ext-setup-root.dry-run")
	sw.Debug = flag(false, "ext-setup-root.debug")
	return sw, problems
}

package units

import (
	"os/exec"
	"regexp"
	"slices"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// cliCommands are the binary's commands; TestCLICommands checks the list
// against the top-level usage, so the man page and completion tests below
// cover every one.
var cliCommands = []string{"boot", "confext", "fetch", "links", "plan", "sysext", "varlink", "version"}

// helpOption is one option as a command's --help lists it.
type helpOption struct {
	name  string // with "--"
	value bool   // takes a value
}

// Go's flag package prints "  -name" or "  -name type"; the systemd-style
// verbs print "  -h --help" or "     --name=META".
var (
	flagLine    = regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)( [a-z]+)?$`)
	systemdLine = regexp.MustCompile(`(?m)^  (?:-h |   )--([a-z][a-z-]*)(=[A-Z]+)?`)
)

// helpOptions runs `BIN CMD --help` and returns the options it lists.
func helpOptions(t *testing.T, bin, cmd string) []helpOption {
	t.Helper()
	out, err := exec.Command(bin, cmd, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", cmd, err, out)
	}
	var opts []helpOption
	for _, re := range []*regexp.Regexp{flagLine, systemdLine} {
		for _, m := range re.FindAllStringSubmatch(string(out), -1) {
			opts = append(opts, helpOption{"--" + m[1], m[2] != ""})
		}
	}
	if cmd != "version" && len(opts) == 0 {
		t.Fatalf("%s --help: no options found (format changed?):\n%s", cmd, out)
	}
	return opts
}

func TestCLICommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := testutil.BuildBinary(t)
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(string(out), -1) {
		got = append(got, m[1])
	}
	if !slices.Equal(got, cliCommands) {
		t.Errorf("commands in --help %q, the tests know %q", got, cliCommands)
	}
	if o := helpOptions(t, bin, "confext"); !slices.Contains(o, helpOption{"--mutable", true}) ||
		!slices.Contains(o, helpOption{"--force", false}) {
		t.Errorf("confext options parsed wrong: %v", o)
	}
	if o := helpOptions(t, bin, "plan"); !slices.Contains(o, helpOption{"--json", false}) ||
		!slices.Contains(o, helpOption{"--root", true}) {
		t.Errorf("plan options parsed wrong: %v", o)
	}
}

package units

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

const completionScript = "../completion/ext-setup-root.bash"

// complete sources the completion script in a clean bash, sets COMP_WORDS
// and COMP_CWORD (the last word is the one being completed) as bash does
// for a TAB, calls the function `complete -p` names, and returns COMPREPLY.
func complete(t *testing.T, words ...string) []string {
	t.Helper()
	const drive = `source "$1"; shift
spec=$(complete -p ext-setup-root) || exit 3
fn=${spec#*-F }; fn=${fn%% *}
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$fn" ext-setup-root "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`
	args := append([]string{"--norc", "--noprofile", "-c", drive, "bash", completionScript}, words...)
	out, err := exec.Command("bash", args...).Output()
	if err != nil {
		t.Fatalf("completing %q: %v", words, err)
	}
	return strings.Fields(string(out))
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestCompletionOptions: for every command, `CMD --<TAB>` offers exactly
// the options the command's --help lists ("--root=" for one taking a
// value), so the script cannot drift from the binary.
func TestCompletionOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testutil.RequireTool(t, "bash")
	bin := testutil.BuildBinary(t)
	if got := complete(t, "ext-setup-root", ""); !slices.Equal(sorted(got), sorted(cliCommands)) {
		t.Errorf("commands: %q, want %q", got, cliCommands)
	}
	for _, cmd := range cliCommands {
		want := []string{"--help"} // Go's flag package takes --help unlisted
		for _, o := range helpOptions(t, bin, cmd) {
			w := o.name
			if o.value {
				w += "="
			}
			if !slices.Contains(want, w) {
				want = append(want, w)
			}
		}
		if got := complete(t, "ext-setup-root", cmd, "--"); !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("%s --<TAB>: %q, want %q", cmd, sorted(got), sorted(want))
		}
	}
}

// TestCompletionVerbs: the confext and sysext verbs are the ones their
// --help lists, offered once (not after a verb).
func TestCompletionVerbs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testutil.RequireTool(t, "bash")
	bin := testutil.BuildBinary(t)
	for _, cmd := range []string{"confext", "sysext"} {
		out, _ := exec.Command(bin, cmd, "--help").CombinedOutput()
		_, section, _ := strings.Cut(string(out), "\nCommands:\n")
		section, _, _ = strings.Cut(section, "\n\n")
		var want []string
		for _, m := range regexp.MustCompile(`(?m)^  \[?([a-z]+)\]?\s`).FindAllStringSubmatch(section, -1) {
			want = append(want, m[1])
		}
		if len(want) < 5 {
			t.Fatalf("%s --help: verbs not found:\n%s", cmd, out)
		}
		if got := complete(t, "ext-setup-root", cmd, ""); !slices.Equal(sorted(got), sorted(want)) {
			t.Errorf("%s <TAB>: %q, want %q", cmd, got, want)
		}
		if got := complete(t, "ext-setup-root", cmd, "--force", "m"); !slices.Equal(got, []string{"merge"}) {
			t.Errorf("%s --force m<TAB>: %q", cmd, got)
		}
		if got := complete(t, "ext-setup-root", cmd, "merge", ""); len(got) != 0 {
			t.Errorf("%s merge <TAB>: %q, want nothing", cmd, got)
		}
	}
}

// TestCompletionValues: option values, in the three shapes bash hands over
// ("--opt" "=" "val" with its default COMP_WORDBREAKS, "--opt=val" as one
// word without "=" in it, "--opt" "val"), and --root's directories.
func TestCompletionValues(t *testing.T) {
	testutil.RequireTool(t, "bash")
	modes := []string{"yes", "no", "auto", "import", "ephemeral", "ephemeral-import", "help"}
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sfile"), nil, 0o644)
	for _, c := range []struct {
		words []string
		want  []string
	}{
		{[]string{"confext", "--mutable", "=", ""}, modes},
		{[]string{"confext", "--mutable", "=", "eph"}, []string{"ephemeral", "ephemeral-import"}},
		{[]string{"sysext", "--mutable=eph"}, []string{"--mutable=ephemeral", "--mutable=ephemeral-import"}},
		{[]string{"sysext", "--json", ""}, []string{"pretty", "short", "off"}},
		{[]string{"confext", "--noexec", "=", ""}, []string{"yes", "no"}},
		{[]string{"boot", "--stage", ""}, []string{"pre", "post", "late-confext", "late-sysext"}},
		{[]string{"boot", "-stage", "=", "late"}, []string{"late-confext", "late-sysext"}},
		{[]string{"confext", "--root", "=", dir + "/s"}, []string{dir + "/sub"}},
		{[]string{"links", "--root", dir + "/s"}, []string{dir + "/sub"}},
		{[]string{"plan", "--config", dir + "/sf"}, []string{dir + "/sfile"}},
		// plan's --json is a switch: options follow, not values.
		{[]string{"plan", "--json", "--r"}, []string{"--root="}},
		{[]string{"boot", "--dry-run", "--st"}, []string{"--stage="}},
	} {
		if got := complete(t, append([]string{"ext-setup-root"}, c.words...)...); !slices.Equal(sorted(got), sorted(c.want)) {
			t.Errorf("%q<TAB>: %q, want %q", c.words, got, c.want)
		}
	}
}

package prepare

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestEREAgainstGNUFind compares CompileERE with GNU find -regextype egrep
// -regex (what Flatcar's reset runs) on the same names: both must select
// exactly the same paths, for every pattern that both accept.
func TestEREAgainstGNUFind(t *testing.T) {
	testutil.RequireTool(t, "find")
	if out, _ := exec.Command("find", "--version").Output(); !bytes.Contains(out, []byte("GNU findutils")) {
		testutil.Gate(t, "find is not GNU find")
	}
	dir := t.TempDir()
	names := []string{"a", "ab", "aab", "aaab", "axb", "a\nb", "a b", "a.b", "a\\b", "a{2}b", "a[b", "a]b",
		"x y", "etc", "etc2", "A_1", "b\na", "a-b", "a^b", "a$b", "a|b", "a*b", "a+b", "a?b", "a(b", "a)b", "a\tb"}
	for _, d := range []string{"etc", "etc/ssh", "var/lib/x", "home/core/.ssh"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	for _, n := range names {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
		os.WriteFile(filepath.Join(dir, "etc/ssh", n), nil, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "home/core/.ssh/authorized_keys"), nil, 0o600)
	os.WriteFile(filepath.Join(dir, "var/lib/x/machine-id"), nil, 0o600)
	all := findPaths(t, dir)
	patterns := []string{
		`\./a.b`, `\./a{2}b`, `\./a[^x]b`, `\./a[\]b`, `\./a\.b`, `\./a$.b`, `\./a.^b`, `*\./axb`, `\./a**xb`,
		`\./a{,2}b`, `\./a{1b`, `\./a{2`, `\./()axb`, `\./a|`, `\./a\sb`, `\./x\sy`, `\./a[.]b`, `\./a[]x]b`,
		`+\./axb`, `\./a\{2}b`, `\./a[[:alpha:]-]b`, `\./axb)`, `\./a[^[:alpha:]]b`, `\./a\wb`, `\./a\Wb`,
		`\./a\Sb`, "\\./axb\n\\./aab", `.*`, `\./etc(/.*)?`, `\./(etc|var)(/.*)?`, `\./etc/ssh/a.*`,
		`\./home/core/\.ssh(/authorized_keys)?|\./home(/core)?`, `.*/a[[:space:]]b`, `.*a[b-y]b`, `.*a[-b]b`,
		`\./a[=b=]`, `\./a[.b.]`, `(\./etc)?`, `\./a(a|x)?b`, `\./a(a|x)+b`, `\./a?b`, `\./a+?b`, `\./a*+b`,
		`\./a\bb`, `\./a\Bb`, `\./\w+`, `\./[a-z]{1,2}`, `\./[a-z]{2,}`, `\./[^a]*`, `^\./ab$`, `\./ab$|^\./aab`,
		`\./a[\n]b`, `\./a.b|.*machine-id`, `\./var/lib/x/machine-id`, "\\`\\./ab\\'", `\./a\qb`, `\./a\|b`,
		`\./a\*b`, `\./a\(b`, `\./a\)b`, `\./a\$b`, `\./a\^b`, `\./a\?b`, `\./a\+b`, `\./a[*]b`, `\./a[$^]b`,
		`\./a[a-]b`, `\./a[]-a]b`, `\./a[[:digit:][:upper:]]*_1`, `\./A_[[:digit:]]`, `\./a	b`, `\./a[[:blank:]]b`,
	}
	for _, p := range patterns {
		t.Run(strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
			c := exec.Command("find", ".", "-regextype", "egrep", "-regex", p, "-print0")
			c.Dir = dir
			var stderr bytes.Buffer
			c.Stderr = &stderr
			out, ferr := c.Output()
			re, err := CompileERE(p)
			if ferr != nil {
				if err == nil {
					t.Fatalf("GNU find rejects %q (%s) but CompileERE accepts it", p, stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("CompileERE(%q): %v (GNU find accepts it)", p, err)
			}
			want := splitNul(out)
			var got []string
			for _, a := range all {
				if re.MatchString(a) {
					got = append(got, a)
				}
			}
			sort.Strings(got)
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("pattern %q:\n GNU find: %q\n ours:     %q", p, want, got)
			}
		})
	}
}

// TestEREUnsupported: what RE2 cannot express is an error, never a
// different match.
func TestEREUnsupported(t *testing.T) {
	for _, p := range []string{`(a)\1`, `\<a`, `a\>`, `a{1001}`, `[[.ab.]]`, `a\`, `(a`, `[a`, `[z-a]`} {
		if _, err := CompileERE(p); err == nil {
			t.Errorf("CompileERE(%q) accepted", p)
		}
	}
}

func findPaths(t *testing.T, dir string) []string {
	t.Helper()
	c := exec.Command("find", ".", "-print0")
	c.Dir = dir
	out, err := c.Output()
	if err != nil {
		t.Fatal(err)
	}
	return splitNul(out)
}

func splitNul(b []byte) []string {
	var out []string
	for _, s := range strings.Split(string(b), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

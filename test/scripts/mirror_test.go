// Package scripts tests the shell helpers in scripts/lib.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// mirror runs debian_mirror of scripts/lib/debian-mirror.sh against the
// fake apt configuration etc, with env added.
func mirror(t *testing.T, etc string, env ...string) (string, error) {
	t.Helper()
	lib, err := filepath.Abs("../../scripts/lib/debian-mirror.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", `. "$1" && debian_mirror`, "bash", lib)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "EXT_SETUP_ROOT_APT_ETC=" + etc}, env...)
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDebianMirror(t *testing.T) {
	testutil.RequireTool(t, "bash")
	deb822 := `Types: deb
# a comment
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm

types: deb
uris: http://mirror.example/debian/
suites: bookworm bookworm-updates
components: main
`
	for _, c := range []struct {
		name  string
		files map[string]string
		env   []string
		want  string
		fails bool
	}{
		{"deb822", map[string]string{"sources.list.d/debian.sources": deb822}, nil, "http://mirror.example/debian", false},
		{"deb822 wins over a list", map[string]string{"sources.list.d/debian.sources": deb822, "sources.list": "deb http://list.example/debian bookworm main\n"}, nil, "http://mirror.example/debian", false},
		{"one-line with options", map[string]string{"sources.list": "# deb http://commented.example/debian x main\ndeb [arch=amd64 signed-by=/k.gpg] http://sec.example/debian-security bookworm-security main\ndeb [arch=amd64] http://list.example/debian bookworm main\n"}, nil, "http://list.example/debian", false},
		{"list in sources.list.d", map[string]string{"sources.list.d/x.list": "deb http://d.example/debian trixie main\n"}, nil, "http://d.example/debian", false},
		{"override", map[string]string{"sources.list.d/debian.sources": deb822}, []string{"EXT_SETUP_ROOT_DEBIAN_MIRROR=http://override.example/debian/"}, "http://override.example/debian", false},
		{"nothing configured", map[string]string{"sources.list": "# empty\n"}, nil, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			etc := t.TempDir()
			for p, s := range c.files {
				write(t, filepath.Join(etc, p), s)
			}
			got, err := mirror(t, etc, c.env...)
			if c.fails {
				if err == nil {
					t.Fatalf("got %q, want a failure", got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("debian_mirror = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// TestNoMirrorHostInScripts: the scripts take the mirror from
// debian_mirror, never from a host name of their own.
func TestNoMirrorHostInScripts(t *testing.T) {
	files, _ := filepath.Glob("../../scripts/*.sh")
	more, _ := filepath.Glob("../../bench/*.sh")
	for _, f := range append(files, more...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "deb.debian.org") || strings.Contains(string(b), "http://ftp.") {
			t.Errorf("%s names a Debian mirror host; use debian_mirror (scripts/lib/debian-mirror.sh)", f)
		}
	}
}

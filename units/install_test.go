package units

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// installed lists what `make install` must produce for PREFIX=/usr, with
// modes; docs/boot.md ("What gets installed") shows the same list.
var installed = map[string]fs.FileMode{
	"usr/bin/ext-setup-root":                                                                   0o755,
	"usr/lib/systemd/system/ext-setup-root-pre.service":                                        0o644,
	"usr/lib/systemd/system/ext-setup-root-post.service":                                       0o644,
	"usr/lib/systemd/system/systemd-confext.service.d/10-ext-setup-root.conf":                  0o644,
	"usr/lib/systemd/system/systemd-sysext.service.d/10-ext-setup-root.conf":                   0o644,
	"usr/lib/systemd/confext.conf.d/10-ext-setup-root.conf":                                    0o644,
	"usr/lib/systemd/system/systemd-sysext@.service.d/10-ext-setup-root.conf":                  0o644,
	"usr/lib/systemd/system/systemd-sysupdate-notify-sysext@.service.d/10-ext-setup-root.conf": 0o644,
	"usr/lib/dracut/modules.d/99ext-setup-root/module-setup.sh":                                0o755,
	"usr/share/doc/ext-setup-root/varlink.md":                                                  0o644,
	"usr/share/doc/ext-setup-root/boot.md":                                                     0o644,
	"usr/share/man/man8/ext-setup-root.8":                                                      0o644,
	"usr/share/bash-completion/completions/ext-setup-root":                                     0o644,
}

func makeInstall(t *testing.T, args ...string) string {
	t.Helper()
	return makeTarget(t, "install", args...)
}

// makeTarget runs `make TARGET DESTDIR=<temp dir>` and returns the temp dir.
func makeTarget(t *testing.T, target string, args ...string) string {
	t.Helper()
	testutil.RequireTool(t, "make", "go")
	dest := t.TempDir()
	// BIN keeps the build out of the checkout's bin/.
	cmd := exec.Command("make", append([]string{"-C", "..", "-s", target,
		"DESTDIR=" + dest, "BIN=" + filepath.Join(t.TempDir(), "ext-setup-root")}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", target, err, out)
	}
	return dest
}

func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dest := makeInstall(t)
	var got []string
	filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dest, p)
			got = append(got, rel)
			if want, ok := installed[rel]; ok {
				fi, _ := d.Info()
				if fi.Mode() != want {
					t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), want)
				}
			}
		}
		return nil
	})
	var want []string
	for k := range installed {
		want = append(want, k)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("installed files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for rel := range installed {
		if strings.HasSuffix(rel, ".service") || strings.HasSuffix(rel, ".conf") {
			b, _ := os.ReadFile(filepath.Join(dest, rel))
			src := "initrd/" + filepath.Base(rel)
			if strings.Contains(rel, ".service.d/") || strings.Contains(rel, ".conf.d/") {
				src = "host/" + filepath.Base(filepath.Dir(rel)) + "/" + filepath.Base(rel)
			}
			s, _ := os.ReadFile(src)
			if string(b) != string(s) {
				t.Errorf("%s differs from %s with PREFIX=/usr", rel, src)
			}
		}
	}
}

func TestMakeInstallPrefix(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dest := makeInstall(t, "PREFIX=/opt/esr")
	for _, rel := range []string{
		"usr/lib/systemd/system/ext-setup-root-pre.service",
		"usr/lib/systemd/system/systemd-confext.service.d/10-ext-setup-root.conf",
		"usr/lib/dracut/modules.d/99ext-setup-root/module-setup.sh",
	} {
		b, err := os.ReadFile(filepath.Join(dest, rel))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "/usr/bin/ext-setup-root") || !strings.Contains(string(b), "/opt/esr/bin/ext-setup-root") {
			t.Errorf("%s: binary path not rewritten for PREFIX=/opt/esr", rel)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "opt/esr/bin/ext-setup-root")); err != nil {
		t.Error(err)
	}
}

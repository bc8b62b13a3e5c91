package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil/roottest"
)

func TestParseINI(t *testing.T) {
	in := "\xef\xbb\xbf# comment\n; other\n" +
		"Outside=ignored\n" +
		"[ConfExt]\n" +
		"  Mutable = yes  \n" +
		"Long=a \\\n" +
		"# comment inside continuation\n" +
		"  b\n" +
		"NoEquals\n" +
		"=novalue\n" +
		"Empty=\n" +
		"[Other]\n" +
		"Mutable=no\n"
	as, warns, err := ParseINI(strings.NewReader(in), "/etc/systemd/confext.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []Assignment{
		{Line: 3, Section: "", Key: "Outside", Value: "ignored"},
		{Line: 5, Section: "ConfExt", Key: "Mutable", Value: "yes"},
		{Line: 6, Section: "ConfExt", Key: "Long", Value: "a    b"},
		{Line: 11, Section: "ConfExt", Key: "Empty", Value: ""},
		{Line: 13, Section: "Other", Key: "Mutable", Value: "no"},
	}
	if len(as) != len(want) {
		t.Fatalf("got %+v", as)
	}
	for i := range want {
		want[i].File = "/etc/systemd/confext.conf"
		if as[i] != want[i] {
			t.Errorf("assignment %d = %+v, want %+v", i, as[i], want[i])
		}
	}
	if len(warns) != 2 || !strings.Contains(warns[0], "confext.conf:9:") || !strings.Contains(warns[1], ":10:") {
		t.Errorf("warnings %q", warns)
	}
}

func TestParseINIErrors(t *testing.T) {
	for in, line := range map[string]int{
		"[ConfExt]\nA=b\n[Broken\n": 3,
		"[Bad\"Name]\n":             1,
		"[ConfExt]\nMutable=\xff\n": 2,
		"[ConfExt]\n" + strings.Repeat("x", maxConfigLine+10) + "\n": 2,
	} {
		_, _, err := ParseINI(strings.NewReader(in), "f.conf")
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Line != line || ce.File != "f.conf" {
			t.Errorf("%.40q: err = %v, want ConfigError at line %d", in, err, line)
		}
	}
}

func TestLoadConfigDropins(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{
		// /etc wins for the main file; /usr/lib's is never read.
		"etc/systemd/confext.conf":     "[ConfExt]\nMutable=import\nImagePolicy=root=verity\n",
		"usr/lib/systemd/confext.conf": "[ConfExt]\nMutable=yes\nImagePolicy=never\n",
		// Drop-ins sorted by name across dirs; later overrides.
		"usr/lib/systemd/confext.conf.d/10-vendor.conf": "[ConfExt]\nMutable=auto\n",
		"run/systemd/confext.conf.d/20-run.conf":        "[ConfExt]\nMutable=ephemeral\n",
		// /etc's 20-run.conf would not exist; /etc masks 30 with /dev/null.
		"usr/lib/systemd/confext.conf.d/30-masked.conf": "[ConfExt]\nMutable=no\n",
		"etc/systemd/confext.conf.d/30-masked.conf":     "->/dev/null",
		// Same name in /etc hides /usr/local/lib's.
		"usr/local/lib/systemd/confext.conf.d/40-x.conf": "[ConfExt]\nMutable=no\n",
		"etc/systemd/confext.conf.d/40-x.conf":           "[ConfExt]\nMutable=ephemeral-import\nBogus=1\n",
		// Empty file masks; not .conf, hidden: ignored.
		"usr/lib/systemd/confext.conf.d/50-empty.conf": "[ConfExt]\nMutable=no\n",
		"run/systemd/confext.conf.d/50-empty.conf":     "",
		"etc/systemd/confext.conf.d/60-notes.txt":      "[ConfExt]\nMutable=no\n",
		"etc/systemd/confext.conf.d/.hidden.conf":      "[ConfExt]\nMutable=no\n",
		// Other class section ignored; invalid value ignored with warning.
		"etc/systemd/confext.conf.d/70-sys.conf": "[SysExt]\nMutable=no\n[ConfExt]\nMutable=maybe\n",
	})
	cfg, err := LoadConfig(roottest.Open(t, dir), Confext)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mutable == nil || *cfg.Mutable != MutableEphemeralImport {
		t.Errorf("Mutable = %v, want ephemeral-import", cfg.Mutable)
	}
	if cfg.ImagePolicy != "root=verity" {
		t.Errorf("ImagePolicy = %q", cfg.ImagePolicy)
	}
	wantFiles := []string{
		"/etc/systemd/confext.conf",
		"/usr/lib/systemd/confext.conf.d/10-vendor.conf",
		"/run/systemd/confext.conf.d/20-run.conf",
		"/etc/systemd/confext.conf.d/40-x.conf",
		"/etc/systemd/confext.conf.d/70-sys.conf",
	}
	if strings.Join(cfg.Files, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("files\n got %q\nwant %q", cfg.Files, wantFiles)
	}
	if len(cfg.Warnings) != 2 {
		t.Errorf("warnings %q, want unknown key and invalid value", cfg.Warnings)
	}

	// Sysext reads its own file and section.
	cfg, err = LoadConfig(roottest.Open(t, dir), Sysext)
	if err != nil || cfg.Mutable != nil || len(cfg.Files) != 0 {
		t.Errorf("sysext: %+v %v", cfg, err)
	}
}

func TestLoadConfigFallbackAndErrors(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"usr/lib/systemd/sysext.conf": "[SysExt]\nMutable=auto\n"})
	cfg, err := LoadConfig(roottest.Open(t, dir), Sysext)
	if err != nil || cfg.Mutable == nil || *cfg.Mutable != MutableAuto {
		t.Fatalf("fallback to /usr/lib: %+v %v", cfg, err)
	}
	testutil.WriteTree(t, dir, map[string]string{"run/systemd/sysext.conf.d/x.conf": "[SysExt\n"})
	_, err = LoadConfig(roottest.Open(t, dir), Sysext)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.File != "/run/systemd/sysext.conf.d/x.conf" || ce.Line != 1 {
		t.Fatalf("broken drop-in: %v", err)
	}
}

package boot

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("essential_confexts = [\"00-vendor\", \"10-*\"]\nessential_sysexts = []\n"), "boot.toml")
	if err != nil || !reflect.DeepEqual(c.EssentialConfexts, []string{"00-vendor", "10-*"}) || c.EssentialSysexts == nil {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = ParseConfig(strings.NewReader("# nothing\n"), "boot.toml")
	if err != nil || c.EssentialConfexts != nil {
		t.Fatalf("empty file: %+v %v", c, err)
	}
	c, err = ParseConfig(strings.NewReader("essential_confexts = []\n"), "boot.toml")
	if err != nil || c.EssentialConfexts == nil || len(c.EssentialConfexts) != 0 {
		t.Fatalf("explicit empty list must be kept as non-nil: %+v %v", c, err)
	}
	for in, want := range map[string]string{
		"essential_confext = [\"x\"]\n": "unknown key(s) essential_confext",
		"essential_confexts = \"x\"\n":  "boot.toml",
		"essential_sysexts = [\"[\"]\n": "bad pattern",
	} {
		if _, err := ParseConfig(strings.NewReader(in), "boot.toml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", in, err, want)
		}
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	root := t.TempDir()
	if c, err := LoadConfig(root); err != nil || c.File != "" {
		t.Fatalf("no file: %+v %v", c, err)
	}
	write := func(rel, s string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(s), 0o644)
	}
	write("usr/lib/ext-setup-root/boot.toml", "essential_confexts = [\"a\"]\n")
	write("etc/ext-setup-root/boot.toml", "essential_confexts = [\"b\"]\n")
	c, err := LoadConfig(root)
	if err != nil || c.File != "/etc/ext-setup-root/boot.toml" || c.EssentialConfexts[0] != "b" {
		t.Fatalf("%+v %v", c, err)
	}
}

// TestConfigFetchTable: boot.toml's [fetch] table changes only the keys it
// sets (Flatcar's defaults stay), and a bad or unknown key is refused
// naming the file.
func TestConfigFetchTable(t *testing.T) {
	c, err := ParseConfig(strings.NewReader("[fetch]\nbase_url = \"https://mirror.example/fc\"\nessential = [\"oem-*\", \"flatcar-*\"]\n"), "/etc/ext-setup-root/boot.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Fetch.BaseURL != "https://mirror.example/fc" || !c.Fetch.IsEssential("flatcar-zfs") || c.Fetch.Key != "/usr/share/update_engine/update-payload-key.pub.pem" || !c.Fetch.Enabled {
		t.Fatalf("%+v", c.Fetch)
	}
	if d := DefaultConfig(); !d.Fetch.Enabled || d.Fetch.BaseURL != "https://update.release.flatcar-linux.net" {
		t.Fatalf("default %+v", d.Fetch)
	}
	for _, bad := range []string{"[fetch]\ndeadline = \"soon\"\n", "[fetch]\nbase_url = \"http://m\"\n", "[fetch]\nnosuch = 1\n"} {
		if _, err := ParseConfig(strings.NewReader(bad), "/etc/ext-setup-root/boot.toml"); err == nil || !strings.Contains(err.Error(), "boot.toml") {
			t.Errorf("%q: got %v", bad, err)
		}
	}
}

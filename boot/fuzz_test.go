package boot

import (
	"bytes"
	"os"
	"path"
	"strings"
	"testing"
)

// FuzzParseConfig: any boot.toml either fails with an error naming the
// file or gives a configuration whose patterns are valid.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("essential_confexts = [\"00-*default*\"]\nessential_sysexts = []\n"))
	f.Add([]byte("essential_confexts = [\"[\"]\n"))
	f.Add([]byte("unknown = 1\n"))
	for _, p := range []string{"../docs/boot.md", "../docs/prepare.md"} {
		if b, err := os.ReadFile(p); err == nil {
			// The TOML examples of the docs.
			for _, block := range strings.Split(string(b), "```toml")[1:] {
				f.Add([]byte(strings.SplitN(block, "```", 2)[0]))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(bytes.NewReader(data), "fuzz.toml")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, p := range append(c.EssentialConfexts, c.EssentialSysexts...) {
			if _, err := path.Match(p, ""); err != nil {
				t.Fatalf("accepted bad pattern %q: %v", p, err)
			}
		}
	})
}

// FuzzParseCmdline: the boot switches never panic and a disabled stage
// is only ever read from an explicit switch.
func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"quiet", "systemd.sysext=0", "ext-setup-root.stage.pre=0 ext-setup-root.essential=",
		"ext-setup-root.late-refresh=stock rd.systemd.confext=false", "ext_setup_root.dry_run=yes \"ext-setup-root.debug\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(strings.NewReader(s))
		if err != nil {
			return
		}
		if (c.PreOff || c.PostOff) && !strings.Contains(strings.ReplaceAll(s, "_", "-"), "stage") {
			t.Fatalf("a stage is off without a stage switch: %+v", c)
		}
		// The sysroot and booted switches are systemd.confext= and
		// systemd.sysext= alone: removing every rd. word changes neither.
		var kept []string
		for _, w := range strings.Fields(s) {
			if !strings.HasPrefix(w, "rd.") {
				kept = append(kept, w)
			}
		}
		if !strings.Contains(s, "\"") {
			c2, err := ParseCmdline(strings.NewReader(strings.Join(kept, " ")))
			if err == nil && (c2.ConfextOff != c.ConfextOff || c2.SysextOff != c.SysextOff) {
				t.Fatalf("an rd. word changed the sysroot switches: %+v vs %+v", c, c2)
			}
		}
	})
}

// FuzzParseRecord: the boot configuration record (our own state file, but
// read from disk, so bounded and checked like any input) never panics;
// what parses carries a valid configuration.
func FuzzParseRecord(f *testing.F) {
	f.Add(`{"file":"/etc/ext-setup-root/boot.toml","toml":"image_policy = \"root=signed+absent\"\n"}`)
	f.Add(`{"file":"","toml":""}`)
	f.Add(`{"file":"/x","toml":"essential = 1"}`)
	f.Add(`{`)
	f.Fuzz(func(t *testing.T, in string) {
		c, err := parseRecord(strings.NewReader(in), "record")
		if err != nil {
			return
		}
		if c.ImagePolicy != "" {
			if _, err := ParseConfig(strings.NewReader("image_policy = \""+c.ImagePolicy+"\"\n"), "again"); err != nil {
				t.Fatalf("accepted policy %q does not parse again: %v", c.ImagePolicy, err)
			}
		}
	})
}

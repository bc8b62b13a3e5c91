package abslots

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestDefaultConfigValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.VersionKey != "VERSION" || c.OEM.Stores[0] != "/oem/sysext" || c.Extensions.Store != "/etc/flatcar/sysext" {
		t.Fatalf("unexpected default: %+v", c)
	}
}

func TestConfigErrorsNameTheFile(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"version_key = \"BUILD_ID\"", "version_key"},
		{"[oem]\nimage = \"../{OEMID}.raw\"", "oem.image"},
		{"[oem]\nstores = []", "oem.stores"},
		{"[extensions]\nstore = \"relative\"", "extensions.store"},
		{"linkdir = \"/x\"", "unknown keys linkdir"},
		{"[oem\n", "/etc/x.toml"},
	} {
		c := DefaultConfig()
		err := c.Decode(strings.NewReader(tc.in), "/etc/x.toml")
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/etc/x.toml") {
			t.Errorf("%q: error %v, want mention of %q and the file", tc.in, err, tc.want)
		}
	}
}

func TestLoadConfigSearchAndDropins(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, tree{
		"/usr/lib/ext-setup-root/abslots.toml":             "link_dir = \"/usr-lib\"\n",
		"/etc/ext-setup-root/abslots.toml":                 "link_dir = \"/etc-main\"\n",
		"/usr/lib/ext-setup-root/abslots.toml.d/10-a.toml": "version_key = \"VERSION_ID\"\n",
		"/usr/lib/ext-setup-root/abslots.toml.d/20-b.toml": "[extensions]\nstore = \"/usr-lib-b\"\n",
		"/etc/ext-setup-root/abslots.toml.d/20-b.toml":     "[extensions]\nstore = \"/etc-b\"\n",
		"/run/ext-setup-root/abslots.toml.d/30-c.toml":     "[oem]\nessential = true\n",
		"/run/ext-setup-root/abslots.toml.d/README":        "not toml",
	})
	c, err := LoadConfig(hostFS{dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c.LinkDir != "/etc-main" || c.VersionKey != "VERSION_ID" || c.Extensions.Store != "/etc-b" || !c.OEM.Essential {
		t.Fatalf("merged config wrong: link_dir=%s version_key=%s store=%s essential=%v (sources %v)",
			c.LinkDir, c.VersionKey, c.Extensions.Store, c.OEM.Essential, c.Sources)
	}
	want := []string{"(built-in default)", "/etc/ext-setup-root/abslots.toml", "/usr/lib/ext-setup-root/abslots.toml.d/10-a.toml",
		"/etc/ext-setup-root/abslots.toml.d/20-b.toml", "/run/ext-setup-root/abslots.toml.d/30-c.toml"}
	if strings.Join(c.Sources, ",") != strings.Join(want, ",") {
		t.Fatalf("sources %v, want %v", c.Sources, want)
	}
}

func TestCmdlineSwitches(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Switches
	}{
		{"quiet root=LABEL=ROOT", Switches{}},
		{"ext-setup-root.abslots=0", Switches{Disabled: true}},
		{"ext_setup_root.abslots=1 ext-setup-root.dry-run ext-setup-root.debug=yes", Switches{DryRun: true, Debug: true}},
		{`a="b c" ext-setup-root.dry-run=0`, Switches{}},
		{"ext_setup_root.dry_run ext_setup_root.abslots=maybe", Switches{DryRun: true}},
	} {
		c := ParseCmdline(tc.in)
		got, problems := switchesFrom(c)
		if got != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
		if want := strings.Contains(tc.in, "maybe"); want != (len(problems) == 1) {
			t.Errorf("%q: problems %q", tc.in, problems)
		}
	}
	c := ParseCmdline(`x="quoted value" mount.usr=PARTUUID=abc` + "\n")
	if v, _ := c.Get("x"); v != "quoted value" {
		t.Errorf("quoted value: %q", v)
	}
	if v, _ := c.Get("mount.usr"); v != "PARTUUID=abc" {
		t.Errorf("mount.usr: %q", v)
	}
}

func TestEnabledListEdgeCases(t *testing.T) {
	etc := "# header\n\nzfs   # trailing\n-docker\n  spaced  \nzfs\nfoo bar\n#-commented-out\n-ghost # comment after opt-out\n"
	usr := "docker\npython\n-notanoptout\nghost\n"
	var files []enabledFile
	for _, f := range []struct{ name, body string }{{"/etc/l", etc}, {"/usr/l", usr}} {
		n, o, err := parseEnabled(strings.NewReader(f.body))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, enabledFile{Source: f.name, Names: n, Optouts: o})
	}
	l := mergeEnabled(files, []string{"/etc/l", "/usr/l"}, []string{"/etc/l"})
	var got []string
	for _, n := range l.Names {
		got = append(got, n.Name+"@"+n.Source)
	}
	want := "zfs@/etc/l spaced@/etc/l foo@/etc/l bar@/etc/l python@/usr/l"
	if strings.Join(got, " ") != want {
		t.Fatalf("names %q, want %q", strings.Join(got, " "), want)
	}
	if len(l.Optouts) != 2 || l.Optouts[0].Name != "docker" || l.Optouts[1].Name != "ghost" {
		t.Fatalf("optouts %+v", l.Optouts)
	}
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "x..y", "a\x00b", "a\nb", "a\tb", "\x7f"} {
		if err := checkName("NAME", bad, "/etc/flatcar/enabled-sysext.conf"); err == nil || !strings.Contains(err.Error(), "/etc/flatcar/enabled-sysext.conf") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, ok := range []string{"zfs", "docker-flatcar", "3815.2.0", "a_b+c"} {
		if err := checkName("NAME", ok, "f"); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestNonFlatcarLayout runs the documented example layout (testdata/acme.toml,
// shown in docs/abslots.md) on a matching tree, both as --config file and
// found inside the root.
func TestNonFlatcarLayout(t *testing.T) {
	const a, b = "41.2", "42.0"
	in := tree{
		"/usr/lib/os-release":                                "ID=acme\nVERSION_ID=" + b + "\nVERSION=\"42 (Blue)\"\n",
		"/usr/share/acme/vendor-release":                     "VENDOR=contoso\n",
		"/var/lib/acme/flags/vendor-contoso.active":          "",
		"/var/lib/acme/flags/vendor-contoso.migrate":         "",
		"/usr/share/acme/migrations/contoso":                 "/etc/contoso-agent.conf\n",
		"/etc/contoso-agent.conf":                            "old",
		"/efi/extensions/vendor-contoso_" + a + ".raw":       "a",
		"/var/lib/acme/vendor/vendor-contoso_" + b + ".raw":  "b",
		"/etc/extensions/vendor-contoso.raw":                 "@/efi/extensions/vendor-contoso_" + a + ".raw",
		"/etc/acme/extensions.list":                          "debug-tools\n-gpu\n",
		"/usr/share/acme/extensions.list":                    "gpu\n",
		"/var/lib/acme/extensions/debug-tools_" + b + ".raw": "dt",
		"/var/lib/acme/extensions/gpu_" + b + ".raw":         "gpu",
		"/etc/extensions/acme-gpu.raw":                       "@/var/lib/acme/extensions/gpu_" + a + ".raw",
	}
	want := tree{
		"/etc/extensions/vendor-contoso.raw":   "@/efi/extensions/vendor-contoso_" + b + ".raw",
		"/etc/extensions/acme-debug-tools.raw": "@/var/lib/acme/extensions/debug-tools_" + b + ".raw",
	}
	check := func(t *testing.T, dir string) {
		got := tree{}
		for k, v := range snapshot(t, dir) {
			if strings.HasPrefix(k, "/etc/extensions/") {
				got[k] = v
			}
		}
		if d := diffTrees(want, got); d != "" {
			t.Fatalf("links differ:\n%s", d)
		}
		for p, c := range map[string]string{"/efi/extensions/vendor-contoso_" + b + ".raw": "b", "/var/lib/acme/vendor/vendor-contoso_" + a + ".raw": "a"} {
			if got, err := os.ReadFile(dir + p); err != nil || string(got) != c {
				t.Errorf("%s: %q %v", p, got, err)
			}
		}
		if _, err := os.Stat(dir + "/etc/contoso-agent.conf"); err == nil {
			t.Errorf("migration did not remove /etc/contoso-agent.conf")
		}
		if _, err := os.Stat(dir + "/var/lib/acme/flags/vendor-contoso.migrate"); err == nil {
			t.Errorf("migrate flag not removed")
		}
	}
	t.Run("config file", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, in)
		p, err := Run(t.Context(), Options{FS: hostFS{dir: dir}, ConfigFile: "testdata/acme.toml", Cmdline: strings.NewReader("")})
		if err != nil {
			t.Fatalf("%v\n%s", err, p)
		}
		check(t, dir)
	})
	t.Run("in root", func(t *testing.T) {
		dir := t.TempDir()
		b, _ := os.ReadFile("testdata/acme.toml")
		writeTree(t, dir, merge(in, tree{"/etc/ext-setup-root/abslots.toml": string(b)}))
		p, err := Run(t.Context(), Options{FS: hostFS{dir: dir}, Cmdline: strings.NewReader("")})
		if err != nil {
			t.Fatalf("%v\n%s", err, p)
		}
		check(t, dir)
		var out bytes.Buffer
		out.WriteString(p.String())
		if !strings.Contains(out.String(), "VERSION_ID=42.0") {
			t.Errorf("plan text:\n%s", out.String())
		}
	})
}

// TestDefaultConfigMatchesTOML keeps the Go default and default.toml (the
// documented form) identical.
func TestDefaultConfigMatchesTOML(t *testing.T) {
	fromTOML, err := decodeDefaultTOML()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromTOML, DefaultConfig()) {
		t.Fatalf("default.toml and DefaultConfig differ:\n%+v\n%+v", fromTOML, DefaultConfig())
	}
}

// TestDocsShowDefaults keeps docs/abslots.md showing the real default and
// example layouts.
func TestDocsShowDefaults(t *testing.T) {
	doc, err := os.ReadFile("../docs/abslots.md")
	if err != nil {
		t.Fatalf("docs/abslots.md is part of the repository: %v", err)
	}
	for _, f := range []string{"default.toml", "testdata/acme.toml"} {
		// A missing or empty file must fail: bytes.Contains(doc, nil) is
		// true, so an unchecked read error made this test pass without
		// default.toml (issue 8 item 11).
		b, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			t.Fatalf("%s is part of the repository: %v (%d bytes)", f, err, len(b))
		}
		if !bytes.Contains(doc, b) {
			t.Errorf("docs/abslots.md does not show %s verbatim", f)
		}
	}
}

func TestRecordFile(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, merge(merge(osRelV2, oemTest), tree{"/oem/sysext/oem-test-" + v2 + ".raw": "v2"}))
	rec := filepath.Join(t.TempDir(), "run/ext-setup-root/abslots.json")
	if _, err := Run(t.Context(), Options{FS: hostFS{dir: dir}, Cmdline: strings.NewReader(""), RecordFile: rec, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rec); err == nil {
		t.Fatal("dry run wrote the record")
	}
	if _, err := Run(t.Context(), Options{FS: hostFS{dir: dir}, Cmdline: strings.NewReader(""), RecordFile: rec}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil || p.OEMID != "test" || len(p.Choices) != 1 || p.Choices[0].Image != "/oem/sysext/oem-test-"+v2+".raw" || p.Changed != 1 {
		t.Fatalf("record %s: %v", b, err)
	}
}

// fakeFetcher provides images by writing fixed content, recording requests.
type fakeFetcher struct {
	got []Missing
	// fail makes every fetch fail; essential names the failures that
	// are essential (by Missing.Name).
	fail      error
	essential map[string]bool
}

func (f *fakeFetcher) Essential(m Missing) bool { return f.essential[m.Name] }

func (f *fakeFetcher) Fetch(_ context.Context, root FS, m Missing) error {
	f.got = append(f.got, m)
	if f.fail != nil {
		return f.fail
	}
	if err := root.MkdirAll(m.Dir, 0o755); err != nil {
		return err
	}
	return root.WriteFileAtomic(m.Dir+"/"+m.File, []byte("fetched"), 0o644)
}

// TestFetcherSeam: missing images are offered to a Fetcher, and what it
// placed is selected in the same run.
func TestFetcherSeam(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, merge(merge(osRelV2, oemTest), tree{"/usr/share/flatcar/enabled-sysext.conf": "zfs\n"}))
	f := &fakeFetcher{}
	p, err := Run(t.Context(), Options{FS: hostFS{dir: dir}, Cmdline: strings.NewReader(""), Fetcher: f})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.got) != 2 || f.got[0].File != "oem-test-"+v2+".raw" || f.got[0].Dir != "/etc/flatcar/oem-sysext" || f.got[1].File != "flatcar-zfs-"+v2+".raw" {
		t.Fatalf("fetch requests %+v", f.got)
	}
	want := tree{
		"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
		"/oem/sysext/oem-test-" + v2 + ".raw":            "fetched",
		"/etc/extensions/oem-test.raw":                   "@/oem/sysext/oem-test-" + v2 + ".raw",
		"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw": "fetched",
		"/etc/extensions/flatcar-zfs.raw":                "@/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw",
	}
	if d := diffTrees(want, snapshot(t, dir)); d != "" {
		t.Fatalf("state differs:\n%s\n%s", d, p)
	}
	if len(p.Missing) != 0 {
		t.Errorf("still missing: %+v", p.Missing)
	}
}

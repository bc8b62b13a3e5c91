package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// abslotsFixture writes an update-boot tree (previous OEM image on /oem,
// new one on root, one enabled extension) and points the kernel command
// line at an empty file.
func abslotsFixture(t *testing.T) string {
	t.Helper()
	old := paths.ProcCmdline
	paths.ProcCmdline = filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(paths.ProcCmdline, []byte("quiet\n"), 0o644)
	t.Cleanup(func() { paths.ProcCmdline = old })
	dir := t.TempDir()
	files := map[string]string{
		"usr/lib/os-release":                      "ID=flatcar\nVERSION=2.0\n",
		"oem/oem-release":                         "ID=test\n",
		"oem/sysext/active-oem-test":              "",
		"oem/sysext/oem-test-1.0.raw":             "v1",
		"etc/flatcar/oem-sysext/oem-test-2.0.raw": "v2",
		"usr/share/flatcar/enabled-sysext.conf":   "zfs\n",
		"etc/flatcar/sysext/flatcar-zfs-2.0.raw":  "zfs",
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "etc/extensions"), 0o755)
	os.Symlink("/oem/sysext/oem-test-1.0.raw", filepath.Join(dir, "etc/extensions/oem-test.raw"))
	return dir
}

func TestPlanJSON(t *testing.T) {
	dir := abslotsFixture(t)
	env, out, errb := testEnv()
	if err := run(env, []string{"plan", "--root=" + dir, "--json"}); err != nil {
		t.Fatalf("plan: %v\n%s", err, errb)
	}
	var p abslots.Plan
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("plan --json output: %v\n%s", err, out)
	}
	if p.Version != "2.0" || p.OEMID != "test" || len(p.Choices) != 2 {
		t.Fatalf("plan: %+v", p)
	}
	if c := p.Choices[0]; c.Image != "/oem/sysext/oem-test-2.0.raw" || c.Fallback != "/etc/flatcar/oem-sysext/oem-test-2.0.raw" {
		t.Errorf("OEM choice %+v", c)
	}
	var ops []string
	for _, a := range p.Actions {
		ops = append(ops, a.Op)
	}
	if strings.Join(ops, " ") != "move place symlink symlink" {
		t.Errorf("actions %v", ops)
	}
	// plan changes nothing
	if l, _ := os.Readlink(filepath.Join(dir, "etc/extensions/oem-test.raw")); l != "/oem/sysext/oem-test-1.0.raw" {
		t.Errorf("plan changed the link to %q", l)
	}
}

func TestPlanTextAndLinks(t *testing.T) {
	dir := abslotsFixture(t)
	env, out, errb := testEnv()
	if err := run(env, []string{"plan", "--root", dir}); err != nil {
		t.Fatalf("plan: %v\n%s", err, errb)
	}
	for _, s := range []string{"version: VERSION=2.0", "oem id: test", "move /oem/sysext/oem-test-1.0.raw -> /etc/flatcar/oem-sysext/oem-test-1.0.raw"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("plan output lacks %q:\n%s", s, out)
		}
	}
	env, _, errb = testEnv()
	if err := run(env, []string{"links", "--root=" + dir, "--dry-run"}); err != nil {
		t.Fatalf("links --dry-run: %v\n%s", err, errb)
	}
	if !strings.Contains(errb.String(), "dry run: would move") {
		t.Errorf("dry run log:\n%s", errb)
	}
	if _, err := os.Stat(filepath.Join(dir, "oem/sysext/oem-test-1.0.raw")); err != nil {
		t.Fatalf("dry run moved: %v", err)
	}
	env, _, errb = testEnv()
	if err := run(env, []string{"links", "--root=" + dir}); err != nil {
		t.Fatalf("links: %v\n%s", err, errb)
	}
	for link, want := range map[string]string{"oem-test.raw": "/oem/sysext/oem-test-2.0.raw", "flatcar-zfs.raw": "/etc/flatcar/sysext/flatcar-zfs-2.0.raw"} {
		if l, _ := os.Readlink(filepath.Join(dir, "etc/extensions", link)); l != want {
			t.Errorf("%s -> %q, want %q\n%s", link, l, want, errb)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/flatcar/oem-sysext/oem-test-1.0.raw")); err != nil {
		t.Errorf("previous image not moved to root: %v", err)
	}
}

func TestAbslotsUsage(t *testing.T) {
	for _, args := range [][]string{{"links", "--bogus"}, {"links", "extra"}, {"plan", "--dry-run"}} {
		env, _, _ := testEnv()
		if c := exitCode(run(env, args)); c != 2 {
			t.Errorf("%v: exit %d, want 2", args, c)
		}
	}
	env, _, _ := testEnv()
	if c := exitCode(run(env, []string{"plan", "--root=/nonexistent-root-dir"})); c != 1 {
		t.Errorf("missing root: exit %d, want 1", c)
	}
}

// TestPlanJSONNothingToDo: `plan --json` on a root with nothing to do
// prints [] for its empty lists, not null.
func TestPlanJSONNothingToDo(t *testing.T) {
	abslotsFixture(t) // kernel command line stub
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "usr/lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "usr/lib/os-release"), []byte("ID=flatcar\nVERSION=2.0\n"), 0o644)
	env, out, errb := testEnv()
	if err := run(env, []string{"plan", "--root=" + dir, "--json"}); err != nil {
		t.Fatalf("%v\n%s", err, errb)
	}
	if strings.Contains(out.String(), "null") || !strings.Contains(out.String(), `"actions": []`) {
		t.Fatalf("plan --json:\n%s", out)
	}
}

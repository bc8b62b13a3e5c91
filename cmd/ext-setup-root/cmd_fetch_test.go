package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/abslots"
)

// TestPlanOSVersion: plan --os-version lists what that version needs
// (the pre-update question), with where a fetcher puts it and the link.
func TestPlanOSVersion(t *testing.T) {
	dir := abslotsFixture(t)
	env, out, errb := testEnv()
	if err := run(env, []string{"plan", "--root=" + dir, "--json", "--os-version=3.0"}); err != nil {
		t.Fatalf("plan: %v\n%s", err, errb)
	}
	var p abslots.Plan
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Version != "3.0" || len(p.Missing) != 2 {
		t.Fatalf("plan for 3.0: %+v", p)
	}
	m := p.Missing[0]
	if m.File != "oem-test-3.0.raw" || m.Link != "/etc/extensions/oem-test.raw" || m.Version != "3.0" || m.Dir != "/etc/flatcar/oem-sysext" {
		t.Fatalf("missing %+v", m)
	}
	if err := run(env, []string{"plan", "--root=" + dir, "--os-version=3.0", "--usr=USR-B"}); err == nil || !strings.Contains(err.Error(), "exclude") {
		t.Fatalf("--os-version with --usr: %v", err)
	}
}

// TestFetchVerbDisabled: the fetch verb honours boot.toml's [fetch]
// enabled = false with a clear error.
func TestFetchVerbDisabled(t *testing.T) {
	dir := abslotsFixture(t)
	writeFile(t, dir+"/etc/ext-setup-root/boot.toml", "[fetch]\nenabled = false\n")
	env, _, _ := testEnv()
	if err := run(env, []string{"fetch", "--root=" + dir}); err == nil || !strings.Contains(err.Error(), "disabled in boot.toml") {
		t.Fatalf("got %v", err)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

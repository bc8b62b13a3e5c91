package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// extRoot is a root with one directory confext and an /etc, nothing
// merged: status and list work on it without privileges.
func extRoot(t *testing.T) string {
	t.Helper()
	r := t.TempDir()
	for p, s := range map[string]string{
		"usr/lib/os-release": "ID=testos\nVERSION_ID=1.0\n",
		"usr/lib/confexts/app/etc/extension-release.d/extension-release.app": "ID=testos\nVERSION_ID=1.0\n",
		"etc/hostname": "h\n",
	} {
		os.MkdirAll(filepath.Join(r, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(r, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestExtensionOptionsAnywhere: systemd-confext's options are accepted
// before and after the verb with the same result, for status and list
// (merge, refresh and unmerge with options on both sides run as root in
// test/systemd262's TestCLILikeSystemd262), and -h/--help works with every
// verb (issue 10 item 6).
func TestExtensionOptionsAnywhere(t *testing.T) {
	r := extRoot(t)
	for _, verb := range []string{"status", "list"} {
		for _, opts := range [][]string{
			{"--json=short"},
			{"--json=pretty", "--no-pager"},
			{"--no-legend", "--no-pager"},
			{"--force", "--no-reload", "--noexec=no", "--always-refresh=no", "--mutable=no", "--json", "short"},
		} {
			runOut := func(args ...string) string {
				env, out, errb := testEnv()
				if err := run(env, args); err != nil {
					t.Fatalf("%q: %v\n%s", args, err, errb)
				}
				return out.String()
			}
			before := runOut(append(append([]string{"confext", "--root=" + r}, opts...), verb)...)
			after := runOut(append([]string{"confext", verb, "--root=" + r}, opts...)...)
			split := runOut(append([]string{"confext", opts[0], verb, "--root=" + r}, opts[1:]...)...)
			if before != after || before != split || before == "" {
				t.Errorf("%s %q: options before the verb\n%s\nafter it\n%s\nsplit\n%s", verb, opts, before, after, split)
			}
			// "since" is null when nothing is merged, as in systemd; a
			// list never is.
			if c := strings.NewReplacer(" ", "", "\t", "", "\n", "").Replace(before); strings.Contains(c, `"extensions":null`) || c == "null" {
				t.Errorf("%s %q: a null list in\n%s", verb, opts, before)
			}
		}
	}
	// --no-legend drops the header line.
	env, out, _ := testEnv()
	if err := run(env, []string{"confext", "list", "--root=" + r, "--no-legend"}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "NAME") || !strings.Contains(out.String(), "app") {
		t.Errorf("list --no-legend:\n%s", out)
	}
	// -h/--help with each verb, before or after it; --version.
	for _, args := range [][]string{{"-h"}, {"--help"}, {"merge", "--help"}, {"refresh", "-h"}, {"unmerge", "--help"}, {"status", "-h"}, {"list", "--help"}, {"--help", "merge"}} {
		env, out, _ := testEnv()
		if err := run(env, append([]string{"sysext"}, args...)); err != nil {
			t.Errorf("sysext %q: %v", args, err)
		}
		for _, want := range []string{"--image-policy=POLICY", "--no-legend", "--always-refresh=BOOL", "merge"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("sysext %q: help lacks %s:\n%s", args, want, out)
			}
		}
	}
	env, out, _ = testEnv()
	if err := run(env, []string{"confext", "--version"}); err != nil || !strings.HasPrefix(out.String(), "ext-setup-root ") {
		t.Errorf("--version: %v %q", err, out)
	}
	// "--" ends the options: what follows is a verb (here an unknown one).
	env, _, _ = testEnv()
	if err := run(env, []string{"confext", "--root=" + r, "--", "--json=short"}); exitCode(err) != 2 || !strings.Contains(err.Error(), `"--json=short"`) {
		t.Errorf("-- did not end the options: %v", err)
	}
	// --image-policy is accepted after the verb too (a bad one is a usage
	// error: TestImagePolicyFlag; the engine applying it: the image policy
	// root tests in extension).
	env, _, errb := testEnv()
	if err := run(env, []string{"confext", "status", "--root=" + r, "--image-policy=root=verity+signed:usr=absent"}); err != nil {
		t.Errorf("--image-policy: %v\n%s", err, errb)
	}
}

// TestExtensionJSONEmpty: every JSON output prints [] for an empty list.
func TestExtensionJSONEmpty(t *testing.T) {
	r := t.TempDir()
	os.MkdirAll(filepath.Join(r, "etc"), 0o755)
	for _, verb := range []string{"list", "status"} {
		env, out, errb := testEnv()
		if err := run(env, []string{"confext", verb, "--root=" + r, "--json=short"}); err != nil {
			t.Fatalf("%s: %v\n%s", verb, err, errb)
		}
		s := strings.TrimSpace(out.String())
		if !strings.HasPrefix(s, "[") {
			t.Errorf("%s --json=short on an empty root: %q", verb, s)
		}
		if verb == "list" && s != "[]" {
			t.Errorf("list --json=short with no images: %q, want []", s)
		}
		if verb == "status" && !strings.Contains(s, `"extensions":[]`) {
			t.Errorf("status --json=short with nothing merged: %q, want \"extensions\":[]", s)
		}
	}
}

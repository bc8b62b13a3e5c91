package systemd262

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestCLILikeSystemd262 (issue 10 item 6): every option systemd-confext
// 262's --help lists is accepted by ours; each verb runs with its options
// before and after it; and on the same merge, our status and list JSON
// equal systemd-confext 262's (paths compared below the root, which the
// two tools see at different places), [] for empty lists included.
func TestCLILikeSystemd262(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)

	// 1. Every option of systemd-confext --help.
	help := sd(t, e, "--help")
	sdOpts := regexp.MustCompile(`(?m)^\s+(?:-h )?(--[a-z-]+)(=[A-Z]+)?`).FindAllStringSubmatch(help.Stdout, -1)
	if len(sdOpts) < 12 {
		t.Fatalf("parsed only %d options from systemd-confext --help:\n%s", len(sdOpts), help.Stdout)
	}
	ourHelp := ours(t, bin, nil, "confext", "--help").Stdout
	for _, m := range sdOpts {
		if !strings.Contains(ourHelp, m[1]+m[2]) {
			t.Errorf("our confext --help lacks %s%s", m[1], m[2])
		}
	}

	f := Fixture{Layout: LayoutSymlink, Images: StandardImages()}
	r := newRoot(t, e, f)
	sdRoot, ourRoot := "--root="+r.In, "--root="+r.Host
	// Every option of the list with a harmless value, for status and list.
	values := map[string]string{"--root": "", "--mutable": "yes", "--image-policy": "*", "--noexec": "no",
		"--always-refresh": "no", "--json": "short"}
	var all []string
	for _, m := range sdOpts {
		switch m[1] {
		case "--help", "--version", "--root", "--json":
			continue
		}
		if m[2] != "" {
			all = append(all, m[1]+"="+values[m[1]])
		} else {
			all = append(all, m[1])
		}
	}

	// compare runs status and list with systemd and with ours (options
	// before the verb, and after it) and requires the same JSON.
	compare := func(when string) {
		for _, verb := range []string{"status", "list"} {
			want := sd(t, e, append([]string{sdRoot, "--json=short", verb}, all...)...)
			if want.ExitCode != 0 {
				t.Fatalf("%s: systemd %s: %s", when, verb, want)
			}
			wantJSON := normalizeJSON(t, strings.ReplaceAll(want.Stdout, r.In, "<root>"))
			for _, args := range [][]string{
				append(append([]string{"confext", ourRoot, "--json=short"}, all...), verb),
				append([]string{"confext", verb, ourRoot, "--json=short"}, all...),
			} {
				got := ours(t, bin, r.OurEnv, args...)
				if got.ExitCode != 0 {
					t.Errorf("%s: ours %q: %s", when, args, got)
					continue
				}
				if g := normalizeJSON(t, strings.ReplaceAll(got.Stdout, r.Host, "<root>")); !reflect.DeepEqual(g, wantJSON) {
					t.Errorf("%s: %s JSON differs (ours %q):\n systemd %s\n ours    %s", when, verb, args, want.Stdout, got.Stdout)
				}
			}
		}
	}
	compare("nothing merged")
	if res := sd(t, e, sdRoot, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("systemd merge: %s", res)
	}
	compare("systemd's merge")
	if res := sd(t, e, sdRoot, "unmerge"); res.ExitCode != 0 {
		t.Fatalf("systemd unmerge: %s", res)
	}

	// 2. Our verbs with their options after the verb (and one before).
	for _, args := range [][]string{
		{"confext", "merge", ourRoot, "--mutable=yes", "--no-reload", "--noexec=no"},
		{"confext", ourRoot, "refresh", "--mutable=yes", "--always-refresh=yes", "--no-pager"},
		{"confext", "refresh", ourRoot, "--mutable", "yes", "--force"},
	} {
		if res := ours(t, bin, r.OurEnv, args...); res.ExitCode != 0 {
			t.Fatalf("ours %q: %s", args, res)
		}
	}
	compare("our merge")
	if res := ours(t, bin, r.OurEnv, "confext", "unmerge", ourRoot, "--no-reload", "--no-legend"); res.ExitCode != 0 {
		t.Fatalf("our unmerge with options after the verb: %s", res)
	}
	compare("after our unmerge")
	UnmountBelow(r.Host + "/etc")
}

// normalizeJSON decodes s for a comparison that ignores formatting. A
// status row's "since" is reduced to whether it is set: with --root,
// systemd 262 reports the modification time of its own /etc (the one
// outside the root: with the root in a chroot, the chroot's /etc, whatever
// is merged under --root), while ours reports the merge's. Both are null
// when nothing is merged.
func normalizeJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(strings.TrimSpace(s)), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	if rows, ok := v.([]any); ok {
		for _, r := range rows {
			if m, ok := r.(map[string]any); ok {
				if since, ok := m["since"]; ok {
					m["since"] = since != nil
				}
			}
		}
	}
	return v
}

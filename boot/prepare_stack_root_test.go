package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// The dedup may remove a user's copy in /etc only when the merge that
// follows shows the same thing at its path: these run the pre stage with
// the real preparer and engines on roots with directory confexts and read
// the merged /etc the stage leaves.

const vendorRelease = "etc/extension-release.d/extension-release.00-vendor-default"

// stackRoot is a root with an os-release, the files given and the user's
// copy etc/important.conf = "mine\n".
func stackRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	realEngineEnv(t)
	root := testutil.Tmpfs(t)
	all := map[string]string{
		"usr/lib/os-release":  "ID=flatcar\nVERSION_ID=1\n",
		"etc/important.conf":  "mine\n",
		"var/lib/.keep":       "",
		"etc/other-user.conf": "not a default\n",
	}
	for k, v := range files {
		all[k] = v
	}
	testutil.WriteTree(t, root, all)
	return root
}

// requireShown fails unless a reader of root's /etc (merged or not) reads
// want at rel.
func requireShown(t *testing.T, root, rel, want, log string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "etc", rel))
	if err != nil || string(b) != want {
		t.Fatalf("/etc/%s reads %q (%v), want %q\n%s", rel, b, err, want, log)
	}
}

// TestDedupRefusedDefaultKeepsCopy: a default confext without an
// extension-release file is refused by the merge, so the user's copy
// identical to it stays (issue 14 item 1).
func TestDedupRefusedDefaultKeepsCopy(t *testing.T) {
	root := stackRoot(t, map[string]string{
		"usr/lib/confexts/00-vendor-default/etc/important.conf": "mine\n",
	})
	_, log := runPreDedup(t, root, Cmdline{})
	requireShown(t, root, "important.conf", "mine\n", log)
}

// TestDedupShadowedDefaultKeepsCopy: /run/confexts/00-vendor-default.v
// shadows the default in /usr/lib/confexts (first search directory wins,
// .v/ picks _2), and _2 lacks the file: the copy stays, and the merged
// /etc still has it (issue 14 item 1).
func TestDedupShadowedDefaultKeepsCopy(t *testing.T) {
	root := stackRoot(t, map[string]string{
		"usr/lib/confexts/00-vendor-default/" + vendorRelease:                         "ID=_any\n",
		"usr/lib/confexts/00-vendor-default/etc/important.conf":                       "mine\n",
		"run/confexts/00-vendor-default.v/00-vendor-default_2/" + vendorRelease:       "ID=_any\n",
		"run/confexts/00-vendor-default.v/00-vendor-default_2/etc/vendor-2-only.conf": "v2\n",
	})
	s, log := runPreDedup(t, root, Cmdline{})
	if s.Err != nil {
		t.Fatalf("stage failed: %v\n%s", s.Err, log)
	}
	requireShown(t, root, "important.conf", "mine\n", log)
	requireShown(t, root, "vendor-2-only.conf", "v2\n", log)
}

// TestDedupHigherLayerKeepsCopy: the admin pinned the vendor's value in
// /etc; a higher confext says otherwise. Removing the copy would let the
// higher layer show through (issue 14 item 2).
func TestDedupHigherLayerKeepsCopy(t *testing.T) {
	root := stackRoot(t, map[string]string{
		"etc/important.conf": "PermitRootLogin no\n",
		"usr/lib/confexts/00-vendor-default/" + vendorRelease:                          "ID=_any\n",
		"usr/lib/confexts/00-vendor-default/etc/important.conf":                        "PermitRootLogin no\n",
		"usr/lib/confexts/50-other/etc/extension-release.d/extension-release.50-other": "ID=_any\n",
		"usr/lib/confexts/50-other/etc/important.conf":                                 "PermitRootLogin yes\n",
	})
	s, log := runPreDedup(t, root, Cmdline{})
	if s.Err != nil {
		t.Fatalf("stage failed: %v\n%s", s.Err, log)
	}
	requireShown(t, root, "important.conf", "PermitRootLogin no\n", log)
}

// TestDedupConfextOffKeepsCopy: with systemd.confext=0 no merge shows the
// defaults, so nothing is deduplicated (issue 14 item 4).
func TestDedupConfextOffKeepsCopy(t *testing.T) {
	root := stackRoot(t, map[string]string{
		"usr/lib/confexts/00-vendor-default/" + vendorRelease:   "ID=_any\n",
		"usr/lib/confexts/00-vendor-default/etc/important.conf": "mine\n",
	})
	s, log := runPreDedup(t, root, Cmdline{ConfextOff: true})
	if s.Err != nil {
		t.Fatalf("stage failed: %v\n%s", s.Err, log)
	}
	requireShown(t, root, "important.conf", "mine\n", log)
}

// TestDedupRemovesWhatTheMergeShows is the control for the tests above:
// with the default confext merged and on top at the path, the identical
// copy goes from the real /etc and the merged /etc shows the same bytes.
func TestDedupRemovesWhatTheMergeShows(t *testing.T) {
	root := stackRoot(t, map[string]string{
		"usr/lib/confexts/00-vendor-default/" + vendorRelease:                          "ID=_any\n",
		"usr/lib/confexts/00-vendor-default/etc/important.conf":                        "mine\n",
		"usr/lib/confexts/50-other/etc/extension-release.d/extension-release.50-other": "ID=_any\n",
		"usr/lib/confexts/50-other/etc/other.conf":                                     "other\n",
	})
	s, log := runPreDedup(t, root, Cmdline{})
	if s.Err != nil || s.Prepare == nil || s.Prepare.Dedup != 1 {
		t.Fatalf("stage: %v, prepare %+v\n%s", s.Err, s.Prepare, log)
	}
	if !isOverlay(t, filepath.Join(root, "etc")) {
		t.Fatalf("/etc not merged\n%s", log)
	}
	requireShown(t, root, "important.conf", "mine\n", log)
	requireShown(t, root, "other-user.conf", "not a default\n", log)
	// The merge took over both images the dedup had opened.
	if !strings.Contains(log, "confext: reused 2 image(s) opened by the prepare step") {
		t.Fatalf("the merge opened the confexts again\n%s", log)
	}
}

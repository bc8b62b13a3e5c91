package systemd262

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

// sdEnv gates t on root, the systemd 262 chroot and the image tools, and
// returns the prepared Env.
func sdEnv(t *testing.T) *Env {
	t.Helper()
	return Require(t, "mksquashfs", "mkfs.erofs", "mkfs.ext4", "losetup")
}

// newRoot builds fixture f on a fresh ext4 loop filesystem (ext4, not tmpfs,
// so that systemd writes the `backing` file: it needs a block device) bound
// into the chroot, and returns the root.
func newRoot(t *testing.T, e *Env, f Fixture) Root {
	t.Helper()
	fs := testutil.LoopFS(t, 64*1024, "ext4")
	r, cleanup, err := e.NewRoot(fs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	if err := f.Build(r.Host); err != nil {
		t.Fatal(err)
	}
	return r
}

// sd runs systemd-confext and fails t if it cannot start.
func sd(t *testing.T, e *Env, args ...string) Result {
	t.Helper()
	r, err := e.Confext(nil, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("%s", r)
	return r
}

// ours runs our binary and fails t if it cannot start.
func ours(t *testing.T, bin string, env []string, args ...string) Result {
	t.Helper()
	r, err := Ours(bin, env, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("%s", r)
	return r
}

// statusEntry is one element of `status --json=short`.
type statusEntry struct {
	Hierarchy  string   `json:"hierarchy"`
	Extensions []string `json:"extensions"`
}

// parseStatus parses systemd's `status --json` array (ours must print the
// same shape).
func parseStatus(out string) ([]statusEntry, error) {
	var s []statusEntry
	err := json.Unmarshal([]byte(strings.TrimSpace(out)), &s)
	return s, err
}

// merged returns the extension list reported for /etc, and whether /etc was
// listed at all.
func merged(s []statusEntry) ([]string, bool) {
	for _, e := range s {
		if e.Hierarchy == "/etc" {
			x := append([]string(nil), e.Extensions...)
			sort.Strings(x)
			return x, true
		}
	}
	return nil, false
}

// imageNames is the expected status list of f: accepted, distinct names.
func imageNames(f Fixture) []string { return AcceptedNames(f.Images) }

// uniqueID returns the unique mount id of root/etc (fails t).
func uniqueID(t *testing.T, root string) uint64 {
	t.Helper()
	id, err := UniqueMountID(filepath.Join(root, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	if id == 0 {
		testutil.Gate(t, "kernel without STATX_MNT_ID_UNIQUE (need Linux 6.8+)")
	}
	return id
}

// requireUnmerged checks that nothing is mounted at or below root/etc and
// that the work dir named by snap (if any) is gone.
func requireUnmerged(t *testing.T, who string, root string, snap *Snapshot) {
	t.Helper()
	if ms := MountsAt(filepath.Join(root, "etc")); len(ms) != 0 {
		var s []string
		for _, m := range ms {
			s = append(s, mountShape(m))
		}
		t.Errorf("%s: still mounted after unmerge:\n  %s", who, strings.Join(s, "\n  "))
	}
	if snap != nil {
		if w, ok := snap.Meta["work_dir"]; ok {
			p := filepath.Join(root, strings.TrimSuffix(w.Content, "\n"))
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s: work dir %s still exists after unmerge", who, p)
			}
		}
	}
}

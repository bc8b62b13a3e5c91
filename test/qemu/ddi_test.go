package qemu

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestDDIRecipe checks the image recipe the verity scenarios use, without
// booting: systemd-repart makes a signed confext DDI with root, verity and
// signature partitions (the Flatcar recipe), an unsigned one without the
// signature partition, and the same input gives the same root hash.
func TestDDIRecipe(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "sgdisk")
	key := TestKey(t, "vendor")
	dir := t.TempDir()
	ext := DefaultConfext(VersionA)
	signed, again, unsigned := filepath.Join(dir, "s.raw"), filepath.Join(dir, "s2.raw"), filepath.Join(dir, "u.raw")
	ext.BuildDDI(t, signed, DDIOptions{Key: &key})
	ext.BuildDDI(t, again, DDIOptions{Key: &key, Seed: ""})
	ext.BuildDDI(t, unsigned, DDIOptions{})
	p := run(t, "sgdisk", "-p", signed)
	for _, want := range []string{"root-x86-64", "root-x86-64-verity", "root-x86-64-verity-sig"} {
		if !strings.Contains(p, want) {
			t.Errorf("signed DDI has no %s partition:\n%s", want, p)
		}
	}
	if u := run(t, "sgdisk", "-p", unsigned); strings.Contains(u, "verity-sig") || !strings.Contains(u, "verity") {
		t.Errorf("unsigned DDI partitions:\n%s", u)
	}
	if RootHashOf(t, signed) != RootHashOf(t, again) {
		t.Errorf("the same content gave root hashes %s and %s", RootHashOf(t, signed), RootHashOf(t, again))
	}
	t.Logf("root hash %s", RootHashOf(t, signed))
}

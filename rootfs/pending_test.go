package rootfs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPending: until Commit the final name keeps its old content and the
// data sits under the temp name; Commit replaces it with the new content
// and mode; Abort leaves nothing; a stale temp of a crashed run is
// replaced, and a final symlink is replaced, not followed.
func TestPending(t *testing.T) {
	base := t.TempDir()
	os.WriteFile(filepath.Join(base, "old"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(base, TempName("img")), []byte("stale"), 0o600)
	os.WriteFile(filepath.Join(base, "outside"), []byte("keep"), 0o644)
	os.Symlink(filepath.Join(base, "outside"), filepath.Join(base, "img"))
	r := openRoot(t, base)
	p, err := r.CreatePending("/img")
	must(t, err)
	if p.TempPath() != "/"+TempName("img") {
		t.Fatalf("temp path %q", p.TempPath())
	}
	p.File.Write([]byte("new"))
	if b, _ := os.ReadFile(filepath.Join(base, p.TempPath())); string(b) != "new" {
		t.Fatalf("temp holds %q", b)
	}
	must(t, p.Commit(0o640))
	p.Abort() // no-op after Commit
	st, err := os.Lstat(filepath.Join(base, "img"))
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o640 {
		t.Fatalf("img: %v %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "outside")); string(b) != "keep" {
		t.Fatal("Commit followed the final symlink")
	}
	q, err := r.CreatePending("/old")
	must(t, err)
	q.File.Write([]byte("partial"))
	q.Abort()
	if b, _ := os.ReadFile(filepath.Join(base, "old")); string(b) != "old" {
		t.Fatalf("Abort changed the final name: %q", b)
	}
	ents, _ := os.ReadDir(base)
	for _, e := range ents {
		if IsTempName(e.Name()) {
			t.Fatalf("temp %s left", e.Name())
		}
	}
}

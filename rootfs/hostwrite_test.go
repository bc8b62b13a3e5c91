package rootfs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteHostFileAtomic checks that state written outside a target root
// creates its parents, lands with the requested mode, replaces an older
// version and leaves no temp file behind.
func TestWriteHostFileAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run", "ext-setup-root", "state.json")
	for _, content := range []string{"one\n", "two\n"} {
		if err := WriteHostFileAtomic(p, []byte(content), 0o700, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Fatalf("content = %q, %v; want %q", b, err, content)
		}
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}
	if st, err := os.Stat(filepath.Dir(p)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("parent mode = %v (%v), want 0700", st.Mode().Perm(), err)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the file: %v", len(ents), ents)
	}
}

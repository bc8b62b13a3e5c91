package rootfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

func openRoot(t *testing.T, dir string) *Root {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// tree creates files ("path": content), directories ("path/") and symlinks
// ("path@": target) under dir.
func tree(t *testing.T, dir string, spec map[string]string) {
	t.Helper()
	for p, v := range spec {
		full := filepath.Join(dir, strings.TrimSuffix(strings.TrimSuffix(p, "@"), "/"))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(p, "/"):
			err = os.MkdirAll(full, 0o755)
		case strings.HasSuffix(p, "@"):
			err = os.Symlink(v, full)
		default:
			err = os.WriteFile(full, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// temps lists temp names left in dir (host path).
func temps(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if IsTempName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

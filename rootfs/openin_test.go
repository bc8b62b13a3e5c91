package rootfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestOpenInStaysBelowDir checks OpenIn on a plain directory fd (not a
// Root): escaping links resolve below it, O_NOFOLLOW refuses a final
// symlink, and errors name the path below the fd's name.
func TestOpenInStaysBelowDir(t *testing.T) {
	r, _, _ := confinedFixture(t)
	dir, err := r.Open("/", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for name, want := range map[string]string{
		"/etc/abs":         "in root",
		"etc/chain":        "in root",
		"../../etc/target": "in root",
	} {
		f, err := OpenIn(dir, name, unix.O_RDONLY)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != want {
			t.Errorf("%s: read %q, want %q", name, b, want)
		}
	}
	// Links aiming at ROOT/../outside/secret look for /outside/secret in
	// the root, which does not exist: never the host's file.
	for _, name := range []string{"/etc/abs-escape", "/etc/rel-escape"} {
		if f, err := OpenIn(dir, name, unix.O_RDONLY); !errors.Is(err, unix.ENOENT) {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s: %v, want ENOENT", name, err)
		}
	}
	_, err = OpenIn(dir, "/etc/abs", unix.O_RDONLY|unix.O_NOFOLLOW)
	var pe *os.PathError
	if !errors.Is(err, unix.ELOOP) || !errors.As(err, &pe) || pe.Path != dir.Name()+"/etc/abs" {
		t.Fatalf("O_NOFOLLOW on a symlink: %v, want ELOOP naming %s/etc/abs", err, dir.Name())
	}
}

func TestRemoveAllInStaysOnMountAndBelowDir(t *testing.T) {
	testutil.RequireRoot(t)
	top := testutil.Tmpfs(t)
	outside := filepath.Join(top, "outside")
	if err := os.MkdirAll(filepath.Join(top, "d/w/work/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "d/w/work/x/f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(top, "d/w/link")); err != nil {
		t.Fatal(err)
	}
	dir, err := os.OpenFile(filepath.Join(top, "d"), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()

	// A mount below the tree is refused, not emptied.
	if err := os.MkdirAll(filepath.Join(top, "d/m/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := testutil.Tmpfs(t)
	if err := os.WriteFile(filepath.Join(mnt, "precious"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(mnt, filepath.Join(top, "d/m/sub"), "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(filepath.Join(top, "d/m/sub"), unix.MNT_DETACH) })
	if err := RemoveAllIn(dir, "m"); !errors.Is(err, unix.EXDEV) {
		t.Errorf("RemoveAllIn across a mount: %v, want EXDEV", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "precious")); err != nil {
		t.Errorf("file on the other mount removed: %v", err)
	}

	if err := RemoveAllIn(dir, "w"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(top, "d/w")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d/w still there: %v", err)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
		t.Errorf("symlink target outside touched: %q %v", b, err)
	}
	if err := RemoveAllIn(dir, "w"); err != nil {
		t.Errorf("missing name: %v, want nil", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if err := RemoveAllIn(dir, bad); !errors.Is(err, unix.EINVAL) {
			t.Errorf("RemoveAllIn(%q) = %v, want EINVAL", bad, err)
		}
	}
}

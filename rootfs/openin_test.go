package rootfs

import (
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
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

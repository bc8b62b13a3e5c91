package sysx

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRetry(t *testing.T) {
	n := 0
	err := Retry(func() error {
		n++
		if n < 3 {
			return unix.EINTR
		}
		return unix.EBUSY
	})
	if !errors.Is(err, unix.EBUSY) || n != 3 {
		t.Fatalf("Retry = %v after %d calls, want EBUSY after 3", err, n)
	}
	m := 0
	v, err := RetryValue(func() (int, error) {
		m++
		if m < 2 {
			return -1, unix.EINTR
		}
		return 7, nil
	})
	if v != 7 || err != nil || m != 2 {
		t.Fatalf("RetryValue = %d, %v after %d calls", v, err, m)
	}
}

func TestMountID(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	self, err := MountID(int(f.Fd()), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	child, err := MountID(int(f.Fd()), "x")
	if err != nil || child != self || self == 0 {
		t.Fatalf("MountID(dir)=%d MountID(dir/x)=%d, %v: want the same non-zero id", self, child, err)
	}
	// A dangling symlink is not followed: its own mount id is returned.
	if err := os.Symlink("/nonexistent/target", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	if id, err := MountID(int(f.Fd()), "l"); err != nil || id != self {
		t.Fatalf("MountID(dangling symlink) = %d, %v", id, err)
	}
	if _, err := MountID(int(f.Fd()), "missing"); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("MountID(missing) = %v, want ENOENT", err)
	}
}

func TestIsInitrd(t *testing.T) {
	root := t.TempDir()
	open := func() int {
		fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	check := func(want bool) {
		t.Helper()
		got, err := IsInitrd(open())
		if err != nil || got != want {
			t.Fatalf("IsInitrd = %v, %v; want %v", got, err, want)
		}
	}
	check(false) // no etc at all
	if err := os.WriteFile(filepath.Join(root, "etc"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	check(false) // etc is a file: ENOTDIR means no
	os.Remove(filepath.Join(root, "etc"))
	os.Mkdir(filepath.Join(root, "etc"), 0o755)
	// An absolute symlink resolves inside the root, not on the host (whose
	// /etc/initrd-release may exist when tests run in an initrd-like box).
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "initrd-release"), nil, 0o644)
	if err := os.Symlink(filepath.Join(host, "initrd-release"), filepath.Join(root, "etc/initrd-release")); err != nil {
		t.Fatal(err)
	}
	check(false)
	os.Remove(filepath.Join(root, "etc/initrd-release"))
	os.WriteFile(filepath.Join(root, "etc/initrd-release"), nil, 0o644)
	check(true)
}

package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestReadRegular (issue 14 item 5): the bounded reader returns a regular
// file whole, refuses a FIFO, a character device, a directory and (with
// NoFollow) a symlink without reading or blocking, refuses a file over the
// bound naming the file and the bound, and keeps "not there" as
// fs.ErrNotExist.
func TestReadRegular(t *testing.T) {
	dir := filepath.Join(testutil.Tmpfs(t), "root")
	tree(t, dir, map[string]string{
		"etc/ok":        "content\n",
		"etc/big":       strings.Repeat("x", 101),
		"etc/link@":     "ok",
		"etc/abs-link@": "/etc/ok",
		"etc/dir/":      "",
	})
	if err := unix.Mkfifo(filepath.Join(dir, "etc/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dir, "etc/zero"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	r := openRoot(t, dir)
	if b, err := r.ReadRegular("/etc/ok", 100, NoFollow); err != nil || string(b) != "content\n" {
		t.Fatalf("ReadRegular(ok) = %q, %v", b, err)
	}
	if b, err := r.ReadRegular("/etc/abs-link", 100, FollowInRoot); err != nil || string(b) != "content\n" {
		t.Fatalf("ReadRegular(abs-link, FollowInRoot) = %q, %v", b, err)
	}
	for _, tc := range []struct{ name, rule string }{
		{"/etc/fifo", "is a FIFO, not a regular file"},
		{"/etc/zero", "is a character device 1:5, not a regular file"},
		{"/etc/dir", "is a directory, not a regular file"},
		{"/etc/link", "is a symbolic link, not a regular file"},
		{"/etc/big", "larger than the 100 bytes allowed"},
	} {
		done := make(chan error, 1)
		go func() { _, err := r.ReadRegular(tc.name, 100, NoFollow); done <- err }()
		select {
		case err := <-done:
			var fe *FileRuleError
			if !errors.As(err, &fe) || err.Error() != filepath.Join(dir, tc.name)+": "+tc.rule {
				t.Errorf("ReadRegular(%s) = %v, want %q naming the file", tc.name, err, tc.rule)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ReadRegular(%s) blocks", tc.name)
		}
	}
	if _, err := r.ReadRegular("/etc/missing", 100, NoFollow); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadRegular(missing) = %v, want fs.ErrNotExist", err)
	}
	// ReadFile is the same reader with MaxConfigFile.
	if _, err := r.ReadFile("/etc/fifo"); err == nil || !strings.Contains(err.Error(), "FIFO") {
		t.Errorf("ReadFile(fifo) = %v", err)
	}
}

// TestReadAtMostExactBound: a file of exactly the bound is read whole.
func TestReadAtMostExactBound(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pw.WriteString("abc")
	pw.Close()
	if b, err := ReadAtMost(pr, "pipe", 3); err != nil || string(b) != "abc" {
		t.Fatalf("ReadAtMost at the bound = %q, %v", b, err)
	}
}

package extension

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// failingReader returns some data, then an error: readSmall must not hand
// the partial data back as if it were the whole file (issue 8 item 8).
type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "partial"), nil
	}
	return 0, errors.New("injected I/O error")
}

func TestReadSmall(t *testing.T) {
	readSmall := func(r io.Reader) ([]byte, error) { return rootfs.ReadAtMost(r, "file", maxSmallFile) }
	if b, err := readSmall(&failingReader{}); err == nil {
		t.Fatalf("readSmall on a failing read = %q, nil", b)
	}
	if _, err := readSmall(io.LimitReader(zeros{}, maxSmallFile+1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("readSmall over the limit: %v", err)
	}
	if b, err := readSmall(strings.NewReader("abc")); err != nil || string(b) != "abc" {
		t.Fatalf("readSmall = %q, %v", b, err)
	}
	// Through readFileIn on a real directory fd.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x\n"), 0o644)
	root, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if b, err := readFileIn(root, "f"); err != nil || string(b) != "x\n" {
		t.Fatalf("readFileIn = %q, %v", b, err)
	}
	// A directory cannot be read: an error, not an empty file.
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	if b, err := readFileIn(root, "d"); err == nil {
		t.Fatalf("readFileIn(directory) = %q, nil", b)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestStripRoot(t *testing.T) {
	base := t.TempDir()
	rootDir := filepath.Join(base, "root")
	os.MkdirAll(filepath.Join(rootDir, "etc"), 0o755)
	root, err := os.Open(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, tc := range []struct{ abs, want string }{
		{rootDir, "/"},
		{rootDir + "/etc", "/etc"},
		{rootDir + "/etc/x", "/etc/x"},
	} {
		got, err := stripRoot(root, tc.abs)
		if err != nil || got != tc.want {
			t.Errorf("stripRoot(%s) = %q, %v; want %q", tc.abs, got, err, tc.want)
		}
	}
	// Host paths outside the root, including a sibling sharing the prefix,
	// are errors, never returned as in-root paths.
	for _, abs := range []string{"/etc", base, rootDir + "x/etc", filepath.Join(base, "other")} {
		if got, err := stripRoot(root, abs); err == nil {
			t.Errorf("stripRoot(%s) = %q, nil; want an error", abs, got)
		}
	}
	slash, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer slash.Close()
	if got, err := stripRoot(slash, "/etc"); err != nil || got != "/etc" {
		t.Errorf("stripRoot(/, /etc) = %q, %v", got, err)
	}
}

// openFds counts this process's open file descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestNoFdLeak: the read-only verbs release every fd they open. Status
// used to leak one fd per existing hierarchy without a merge (issue 8
// item 8).
func TestNoFdLeak(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"etc", "usr/lib/confexts/a/etc", "opt"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	opt := Options{Root: dir, Class: config.Confext}
	// Warm up once (the runtime opens its own fds lazily).
	Status(t.Context(), opt)
	before := openFds(t)
	for i := 0; i < 20; i++ {
		if _, err := Status(t.Context(), opt); err != nil {
			t.Fatal(err)
		}
		if _, err := List(t.Context(), opt); err != nil {
			t.Fatal(err)
		}
		if _, err := Merged(opt); err != nil {
			t.Fatal(err)
		}
	}
	if after := openFds(t); after > before {
		t.Fatalf("%d fds open after 20 rounds of status, list, merged; %d before", after, before)
	}
}

// TestRewriteInPlace: the origin rewrite keeps the inode (the overlay
// serves that one) and ends with exactly the new bytes, longer or shorter.
func TestRewriteInPlace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "origin")
	os.WriteFile(p, []byte("old record, quite long\n"), 0o644)
	var before, after unix.Stat_t
	unix.Stat(p, &before)
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, want := range []string{"short\n", "a much longer record than before\n"} {
		if err := rewriteInPlace(d, "origin", []byte(want)); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != want {
			t.Fatalf("content %q, want %q", b, want)
		}
	}
	unix.Stat(p, &after)
	if before.Ino != after.Ino {
		t.Fatal("inode changed: the overlay would keep serving the old file")
	}
	if err := rewriteInPlace(d, "missing", []byte("x")); err == nil {
		t.Fatal("rewrite of a missing file succeeded")
	}
}

package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMkdirAll(t *testing.T) {
	base := t.TempDir()
	tree(t, base, map[string]string{
		"root/real-var/": "",
		"root/var@":      "/real-var",
		"root/file":      "x",
		"outside/":       "",
		"root/escape@":   "../outside",
		"root/escape2@":  "../../real-var",
	})
	r := openRoot(t, filepath.Join(base, "root"))
	must(t, r.MkdirAll("/a/b/c", 0o750))
	must(t, r.MkdirAll("a/b/c", 0o750)) // again: no error
	must(t, r.MkdirAll("/var/lib/extensions", 0o755))
	if _, err := os.Stat(filepath.Join(base, "root/real-var/lib/extensions")); err != nil {
		t.Errorf("MkdirAll through an in-root absolute link: %v", err)
	}
	// A link whose target does not exist in the root is not created
	// through (like os.MkdirAll); nothing appears outside either way.
	if err := r.MkdirAll("/escape/made", 0o755); err == nil {
		t.Errorf("MkdirAll through a dangling link succeeded")
	}
	if _, err := os.Stat(filepath.Join(base, "outside/made")); err == nil {
		t.Errorf("MkdirAll escaped the root")
	}
	must(t, r.MkdirAll("/escape2/made", 0o755))
	if _, err := os.Stat(filepath.Join(base, "root/real-var/made")); err != nil {
		t.Errorf("MkdirAll(escape2/made) not confined to root/real-var/made: %v", err)
	}
	if err := r.MkdirAll("/file/sub", 0o755); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("MkdirAll below a file: %v, want ENOTDIR", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	base := t.TempDir()
	tree(t, base, map[string]string{
		"outside/victim": "untouched",
		"root/etc/link@": "../../outside/victim",
		"root/etc/old":   "old",
	})
	r := openRoot(t, filepath.Join(base, "root"))
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	must(t, r.WriteFileAtomic("/etc/old", []byte("new"), 0o644))
	must(t, r.WriteFileAtomic("/etc/link", []byte("replaced link"), 0o600))
	must(t, r.WriteFileAtomic("/etc/"+strings.Repeat("n", 250), []byte("long"), 0o644))
	b, _ := os.ReadFile(filepath.Join(base, "root/etc/old"))
	st, _ := os.Stat(filepath.Join(base, "root/etc/old"))
	if string(b) != "new" || st.Mode().Perm() != 0o644 {
		t.Errorf("old = %q mode %v, want new 0644 despite umask", b, st.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(base, "outside/victim")); string(b) != "untouched" {
		t.Errorf("WriteFileAtomic followed a link out of the root")
	}
	if fi, _ := os.Lstat(filepath.Join(base, "root/etc/link")); !fi.Mode().IsRegular() {
		t.Errorf("link not replaced by a file")
	}
	if tt := temps(t, filepath.Join(base, "root/etc")); len(tt) != 0 {
		t.Errorf("temps left: %v", tt)
	}
	if err := r.WriteFileAtomic("/missing-dir/f", nil, 0o644); !errors.Is(err, unix.ENOENT) {
		t.Errorf("write into missing dir: %v", err)
	}
}

func TestSymlinkAtomicReplacesWithoutGap(t *testing.T) {
	base := t.TempDir()
	tree(t, base, map[string]string{"root/etc/extensions/": "", "root/etc/dir/": ""})
	r := openRoot(t, filepath.Join(base, "root"))
	link := filepath.Join(base, "root/etc/extensions/x.raw")
	must(t, r.SymlinkAtomic("/oem/sysext/x-1.raw", "/etc/extensions/x.raw"))
	var reads, fails atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			reads.Add(1)
			if _, err := os.Readlink(link); err != nil {
				fails.Add(1)
			}
		}
	}()
	for i := 0; i < 200; i++ {
		must(t, r.SymlinkAtomic("/oem/sysext/x-"+string(rune('a'+i%26))+".raw", "/etc/extensions/x.raw"))
	}
	close(stop)
	<-done
	if fails.Load() != 0 {
		t.Errorf("%d of %d readlinks failed while the link was replaced", fails.Load(), reads.Load())
	}
	if got, _ := os.Readlink(link); got != "/oem/sysext/x-"+string(rune('a'+199%26))+".raw" {
		t.Errorf("final link %q", got)
	}
	if err := r.SymlinkAtomic("/x", "/etc/dir"); err == nil {
		t.Errorf("SymlinkAtomic replaced a directory")
	}
	if fi, err := os.Lstat(filepath.Join(base, "root/etc/dir")); err != nil || !fi.IsDir() {
		t.Errorf("directory lost: %v", err)
	}
	if tt := temps(t, filepath.Join(base, "root/etc")); len(tt) != 0 {
		t.Errorf("temps left: %v", tt)
	}
}

func TestRemoveRenameRemoveAll(t *testing.T) {
	base := t.TempDir()
	tree(t, base, map[string]string{
		"outside/keep":       "k",
		"root/a/file":        "f",
		"root/a/empty/":      "",
		"root/a/link@":       "/a/file",
		"root/tree/x/y/z":    "z",
		"root/tree/out@":     "../../outside",
		"root/tree/abs-out@": "/",
	})
	r := openRoot(t, filepath.Join(base, "root"))
	must(t, r.Remove("/a/link"))
	if _, err := os.Stat(filepath.Join(base, "root/a/file")); err != nil {
		t.Errorf("Remove(link) removed the target")
	}
	must(t, r.Remove("/a/empty"))
	must(t, r.Rename("/a/file", "/b-file"))
	if b, _ := os.ReadFile(filepath.Join(base, "root/b-file")); string(b) != "f" {
		t.Errorf("Rename: %q", b)
	}
	must(t, r.RemoveAll("/tree"))
	must(t, r.RemoveAll("/tree")) // missing: no error
	if _, err := os.Stat(filepath.Join(base, "root/tree")); !os.IsNotExist(err) {
		t.Errorf("tree still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "outside/keep")); err != nil {
		t.Errorf("RemoveAll followed a link out: %v", err)
	}
	if err := r.Remove("/nope"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Remove(missing): %v", err)
	}
}

func TestCleanTemps(t *testing.T) {
	base := t.TempDir()
	tree(t, base, map[string]string{
		"root/d/.x.raw.ext-setup-root-tmp":    "partial",
		"root/d/.tree.ext-setup-root-tmp/a/b": "partial",
		"root/d/.hidden":                      "user",
		"root/d/x.raw":                        "user",
	})
	r := openRoot(t, filepath.Join(base, "root"))
	must(t, r.CleanTemps("/d"))
	ents, _ := os.ReadDir(filepath.Join(base, "root/d"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".hidden x.raw" {
		t.Errorf("after CleanTemps: %v", names)
	}
}

package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// TestAtomicWritesCrashAtEveryStep crashes WriteFileAtomic and
// SymlinkAtomic at each fault point: the name must hold the old or the new
// value (never be missing), and a rerun must reach the new value with no
// temp left.
func TestAtomicWritesCrashAtEveryStep(t *testing.T) {
	base := t.TempDir()
	r := openRoot(t, base)
	for _, op := range []struct {
		name     string
		setup    func()
		run      func() error
		old, new string
		get      func() string
	}{
		{
			name:  "WriteFileAtomic",
			setup: func() { must(t, os.WriteFile(filepath.Join(base, "f"), []byte("old"), 0o644)) },
			run:   func() error { return r.WriteFileAtomic("/f", []byte("new"), 0o644) },
			old:   "old", new: "new",
			get: func() string { b, _ := os.ReadFile(filepath.Join(base, "f")); return string(b) },
		},
		{
			name: "SymlinkAtomic",
			setup: func() {
				os.Remove(filepath.Join(base, "l"))
				must(t, os.Symlink("/oem/old.raw", filepath.Join(base, "l")))
			},
			run: func() error { return r.SymlinkAtomic("/oem/new.raw", "/l") },
			old: "/oem/old.raw", new: "/oem/new.raw",
			get: func() string { s, _ := os.Readlink(filepath.Join(base, "l")); return s },
		},
	} {
		t.Run(op.name, func(t *testing.T) {
			op.setup()
			steps, _, err := runUntil(0, op.run)
			must(t, err)
			if len(steps) < 2 {
				t.Fatalf("only %d fault points: %v", len(steps), steps)
			}
			for n := 1; n <= len(steps); n++ {
				op.setup()
				if _, crashed, _ := runUntil(n, op.run); !crashed {
					t.Fatalf("step %d did not crash", n)
				}
				if v := op.get(); v != op.old && v != op.new {
					t.Fatalf("crash at step %d (%s): value %q", n, steps[n-1], v)
				}
				must(t, op.run())
				if v := op.get(); v != op.new {
					t.Fatalf("rerun after step %d: %q", n, v)
				}
				if tt := temps(t, base); len(tt) != 0 {
					t.Fatalf("rerun after step %d left temps %v", n, tt)
				}
			}
		})
	}
}

// TestRemoveAllDoesNotCrossMounts: a mount inside the tree stops RemoveAll
// with EXDEV and its contents survive.
func TestRemoveAllDoesNotCrossMounts(t *testing.T) {
	root := testutil.Tmpfs(t)
	mp := filepath.Join(root, "tree/mnt")
	tree(t, root, map[string]string{"tree/a": "a", "tree/mnt/": ""})
	must(t, mount.Mount("tmpfs", mp, "tmpfs", 0, ""))
	t.Cleanup(func() { mount.Unmount(mp, unix.MNT_DETACH) })
	must(t, os.WriteFile(filepath.Join(mp, "precious"), []byte("p"), 0o644))
	r := openRoot(t, root)
	if err := r.RemoveAll("/tree"); !errors.Is(err, unix.EXDEV) {
		t.Fatalf("RemoveAll across a mount: %v, want EXDEV", err)
	}
	if _, err := os.Stat(filepath.Join(mp, "precious")); err != nil {
		t.Errorf("file on the inner mount removed: %v", err)
	}
}

func TestRootAtSlash(t *testing.T) {
	r := openRoot(t, "/")
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "f"), nil, 0o644))
	got, err := r.Resolve(filepath.Join(dir, "f"))
	if err != nil || got != filepath.Join(dir, "f") {
		t.Errorf("Resolve with root / = %q, %v", got, err)
	}
}

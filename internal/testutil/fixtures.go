package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// run runs a helper program and fails t with its output if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unmountAtCleanup detaches the mount at dir when t ends. MNT_DETACH so a
// stray open fd in a failed test does not turn into a cleanup failure.
func unmountAtCleanup(t testing.TB, dir string) {
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// Tmpfs mounts a fresh tmpfs on a new t.TempDir() and returns its path; it is
// unmounted at cleanup. It gates on root. testutil mounts with unix.Mount
// directly (not package mount) so that mount's own tests can use it without
// an import cycle.
func Tmpfs(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	unmountAtCleanup(t, dir)
	return dir
}

// MakeSquashfs builds a squashfs image outFile from srcDir (gates on
// mksquashfs).
func MakeSquashfs(t testing.TB, srcDir, outFile string) {
	t.Helper()
	RequireTool(t, "mksquashfs")
	run(t, "mksquashfs", srcDir, outFile, "-noappend", "-quiet", "-no-progress")
}

// MakeErofs builds an erofs image outFile from srcDir (gates on mkfs.erofs).
func MakeErofs(t testing.TB, srcDir, outFile string) {
	t.Helper()
	RequireTool(t, "mkfs.erofs")
	run(t, "mkfs.erofs", "--quiet", outFile, srcDir)
}

// LoopFS creates a sizeKiB filesystem of type fstype ("ext4" or "vfat") in a
// file, attaches it to a loop device, mounts it on a new t.TempDir() and
// returns the mount point. Everything is released at cleanup. It exists for
// tests that need a real ENOSPC or a second block-backed filesystem. It
// gates on root, losetup and the mkfs tool.
func LoopFS(t testing.TB, sizeKiB int, fstype string) string {
	t.Helper()
	RequireRoot(t)
	var mkfs []string
	switch fstype {
	case "ext4":
		mkfs = []string{"mkfs.ext4", "-q", "-F", "-m", "0"}
	case "vfat":
		mkfs = []string{"mkfs.vfat"}
	default:
		t.Fatalf("LoopFS: unsupported fstype %q", fstype)
	}
	RequireTool(t, "losetup", mkfs[0])
	RequireFilesystem(t, fstype)
	img := filepath.Join(t.TempDir(), "fs."+fstype)
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeKiB) * 1024); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, mkfs[0], append(mkfs[1:], img)...)
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	dir := t.TempDir()
	if err := unix.Mount(dev, dir, fstype, 0, ""); err != nil {
		t.Fatalf("mount %s (%s) on %s: %v", dev, fstype, dir, err)
	}
	unmountAtCleanup(t, dir)
	return dir
}

// FillFS writes a file ".fill" into dir until the filesystem is full, so
// that the next write fails with ENOSPC.
func FillFS(t testing.TB, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, ".fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64*1024)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Smaller writes fill the last partial block.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	if err := f.Sync(); err != nil && !strings.Contains(err.Error(), "no space") {
		t.Fatal(fmt.Errorf("sync fill file: %w", err))
	}
}

// WriteTree creates files (and their parents) under dir: a value starting
// with "->" makes a symlink to the rest, a name ending in "/" a directory,
// anything else a file (0644) with that content.
func WriteTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch tgt, link := strings.CutPrefix(content, "->"); {
		case link:
			err = os.Symlink(tgt, p)
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		default:
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

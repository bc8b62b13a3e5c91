package mount

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// imageTree makes a small directory tree to pack into images.
func imageTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	mkdir(t, filepath.Join(src, "usr", "lib"))
	writeFile(t, filepath.Join(src, "usr", "lib", "hello"), "from the image")
	return src
}

// mountImage attaches img to a loop device, mounts it read-only as fstype
// and checks the content; it returns the loop device path.
func mountImage(t *testing.T, img, fstype string, o LoopOptions) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	loop, err := AttachLoop(f, o)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewFS(fstype, loop.Path)
	if err != nil {
		loop.Close()
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetFlag("ro"); err != nil {
		t.Fatal(err)
	}
	mnt, err := c.Mount(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV)
	// The superblock now holds the device; with autoclear the loop fd may go.
	if cerr := loop.Close(); cerr != nil && err == nil {
		t.Errorf("loop close: %v", cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer mnt.Close()
	target := mkdir(t, filepath.Join(t.TempDir(), "mnt"))
	if err := Attach(mnt, openPath(t, target), false); err != nil {
		t.Fatal(err)
	}
	mnt.Close() // an open mount fd keeps the attached mount busy
	if got := readFile(t, filepath.Join(target, "usr", "lib", "hello")); got != "from the image" {
		t.Errorf("%s: content %q", fstype, got)
	}
	if err := Unmount(target, 0); err != nil {
		t.Fatal(err)
	}
	return loop.Path
}

// loopBacking returns the backing file of a loop device, "" if detached.
func loopBacking(dev string) string {
	b, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	return strings.TrimSpace(string(b))
}

func TestLoopSquashfsErofsAutoclear(t *testing.T) {
	testutil.RequireRoot(t)
	src := imageTree(t)
	dir := t.TempDir()
	sq, ero := filepath.Join(dir, "img.squashfs"), filepath.Join(dir, "img.erofs")
	testutil.MakeSquashfs(t, src, sq)
	testutil.MakeErofs(t, src, ero)
	for _, tc := range []struct{ img, fstype string }{{sq, "squashfs"}, {ero, "erofs"}} {
		t.Run(tc.fstype, func(t *testing.T) {
			dev := mountImage(t, tc.img, tc.fstype, LoopOptions{ReadOnly: true, Autoclear: true})
			// Autoclear: unmounted and closed, the device must be free again.
			if b := loopBacking(dev); b != "" {
				t.Errorf("%s still attached to %s after unmount with autoclear", dev, b)
			}
		})
	}
}

func TestLoopOffsetSizeLimit(t *testing.T) {
	testutil.RequireRoot(t)
	src := imageTree(t)
	dir := t.TempDir()
	sq := filepath.Join(dir, "img.squashfs")
	testutil.MakeSquashfs(t, src, sq)
	data, err := os.ReadFile(sq)
	if err != nil {
		t.Fatal(err)
	}
	const off = 1 << 20
	padded := make([]byte, off+len(data)+64*1024)
	copy(padded[off:], data)
	for i := off + len(data); i < len(padded); i++ {
		padded[i] = 0xff // garbage after the image, outside SizeLimit
	}
	disk := filepath.Join(dir, "disk")
	if err := os.WriteFile(disk, padded, 0o644); err != nil {
		t.Fatal(err)
	}
	size := (uint64(len(data)) + 4095) &^ 4095
	mountImage(t, disk, "squashfs", LoopOptions{ReadOnly: true, Autoclear: true, Offset: off, SizeLimit: size})
}

func TestLoopPartScan(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "sgdisk")
	disk := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(8 << 20)
	f.Close()
	if out, err := exec.Command("sgdisk", "-n", "1:2048:+2M", "-n", "2:0:+2M", disk).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	f, err = os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	loop, err := AttachLoop(f, LoopOptions{ReadOnly: true, PartScan: true})
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	// The kernel creates loopNp1.. itself; udev is not needed for the
	// nodes in devtmpfs. extension/image finds its partition its own way.
	var parts []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		parts, _ = filepath.Glob(loop.Path + "p[0-9]*")
		if len(parts) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 && kernelConfigUnset("CONFIG_EFI_PARTITION") {
		// A property of the kernel build, not a missing install: the lab
		// host kernel has no partition parsers; the QEMU kernel has GPT
		// support.
		t.Skip("kernel built without CONFIG_EFI_PARTITION: no partition scanning to test")
	}
	want := []string{loop.Path + "p1", loop.Path + "p2"}
	if fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Fatalf("partition nodes %v, want %v", parts, want)
	}
}

// kernelConfigUnset reports whether /proc/config.gz says opt is not set.
func kernelConfigUnset(opt string) bool {
	out, err := exec.Command("sh", "-c", "zcat /proc/config.gz 2>/dev/null").Output()
	return err == nil && strings.Contains(string(out), "# "+opt+" is not set")
}

// TestLoopParallel attaches many devices at once, so attachers race for
// the same free device and the EBUSY retry must resolve it.
func TestLoopParallel(t *testing.T) {
	testutil.RequireRoot(t)
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	loops := make([]*Loop, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			f, err := os.Open(img)
			if err != nil {
				errs[i] = err
				return
			}
			defer f.Close()
			loops[i], errs[i] = AttachLoop(f, LoopOptions{ReadOnly: true})
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Errorf("attach %d: %v", i, errs[i])
			continue
		}
		if seen[loops[i].Path] {
			t.Errorf("device %s handed out twice", loops[i].Path)
		}
		seen[loops[i].Path] = true
		if b := loopBacking(loops[i].Path); b != img {
			t.Errorf("%s backs %q, want %s", loops[i].Path, b, img)
		}
	}
	for _, l := range loops {
		if l != nil {
			dev := l.Path
			if err := l.Close(); err != nil {
				t.Errorf("close %s: %v", dev, err)
			}
			if b := loopBacking(dev); b != "" {
				t.Errorf("%s still attached after Close without autoclear", dev)
			}
		}
	}
}

package rootfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMoveKeepsHolesAndXattrs (issue 14 item 10): a 256 MiB sparse image
// with 8 blocks written, moved from the OEM file system to another one,
// arrives with about the blocks it had (not 256 MiB allocated, which can
// fill a small OEM partition) and with its xattrs: user.* always,
// security.* and trusted.* where the caller may set them. Before, io.Copy
// filled every hole and no xattr was copied.
func TestMoveKeepsHolesAndXattrs(t *testing.T) {
	r, root := crossFS(t)
	must(t, os.MkdirAll(filepath.Join(root, "oem/sysext"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "etc/extensions"), 0o755))
	src := filepath.Join(root, "oem/sysext/big.raw")
	const size = 256 << 20
	f, err := os.Create(src)
	must(t, err)
	must(t, f.Truncate(size))
	blocks := map[int64][]byte{}
	for i := int64(0); i < 8; i++ {
		off := i * (size / 8)
		if i == 7 {
			off = size - 4096 // the last block: the size must not hang on a trailing hole
		}
		b := bytes.Repeat([]byte{byte('a' + i)}, 4096)
		_, err := f.WriteAt(b, off)
		must(t, err)
		blocks[off] = b
	}
	must(t, f.Close())
	xattrs := map[string]string{"user.verity.roothash": "00112233445566778899aabbccddeeff", "user.note": "sparse"}
	for name, v := range xattrs {
		must(t, unix.Setxattr(src, name, []byte(v), 0))
	}
	// Privileged namespaces: expected to arrive only when the source
	// accepts them too (root on tmpfs does).
	for _, name := range []string{"security.ext-setup-root-test", "trusted.ext-setup-root-test"} {
		if unix.Setxattr(src, name, []byte("p"), 0) == nil {
			xattrs[name] = "p"
		}
	}
	var before, after unix.Stat_t
	must(t, unix.Stat(src, &before))

	must(t, r.Move("/oem/sysext/big.raw", "/etc/extensions/big.raw"))
	dst := filepath.Join(root, "etc/extensions/big.raw")
	must(t, unix.Stat(dst, &after))
	t.Logf("allocated 512-byte blocks: %d before, %d after the move (size %d)", before.Blocks, after.Blocks, after.Size)
	if after.Size != size {
		t.Fatalf("size %d after the move, want %d", after.Size, size)
	}
	if after.Blocks > 2*before.Blocks {
		t.Errorf("allocated blocks %d after the move, %d before: holes filled", after.Blocks, before.Blocks)
	}
	g, err := os.Open(dst)
	must(t, err)
	defer g.Close()
	for off, want := range blocks {
		got := make([]byte, len(want))
		_, err := g.ReadAt(got, off)
		must(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("block at %d differs after the move", off)
		}
	}
	zero := make([]byte, 4096)
	got := make([]byte, 4096)
	_, err = g.ReadAt(got, 4096)
	must(t, err)
	if !bytes.Equal(got, zero) {
		t.Error("a hole reads back non-zero")
	}
	for name, want := range xattrs {
		buf := make([]byte, 256)
		n, err := unix.Getxattr(dst, name, buf)
		if err != nil || string(buf[:n]) != want {
			t.Errorf("xattr %s after the move: %q, %v; want %q", name, buf[:max(n, 0)], err, want)
		}
	}
}

// TestMoveSkipsRefusedXattrs: onto a file system that refuses xattrs
// (ramfs has none), the move still succeeds with the data, and the
// refused names are skipped, as cp -a skips them.
func TestMoveSkipsRefusedXattrs(t *testing.T) {
	r, root := crossFS(t)
	ram := filepath.Join(root, "ram")
	must(t, os.Mkdir(ram, 0o755))
	must(t, unix.Mount("ramfs", ram, "ramfs", 0, ""))
	t.Cleanup(func() { unix.Unmount(ram, unix.MNT_DETACH) })
	src := filepath.Join(root, "oem/x.raw")
	must(t, os.WriteFile(src, []byte("image"), 0o644))
	must(t, unix.Setxattr(src, "user.verity.roothash", []byte("00"), 0))
	must(t, r.Move("/oem/x.raw", "/ram/x.raw"))
	if b, err := os.ReadFile(filepath.Join(ram, "x.raw")); err != nil || string(b) != "image" {
		t.Fatalf("moved content %q, %v", b, err)
	}
	if _, err := os.Lstat(src); !os.IsNotExist(err) {
		t.Errorf("source still there: %v", err)
	}
	// The premise: ramfs really refuses the name.
	if err := unix.Setxattr(filepath.Join(ram, "x.raw"), "user.verity.roothash", []byte("00"), 0); err == nil {
		t.Fatal("ramfs accepted a user xattr; the test needs a target that refuses one")
	}
}

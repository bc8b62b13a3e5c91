package abslots

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// veritySidecar writes a .verity sidecar (veritysetup format-1 superblock
// in the first 4 KiB block, then room for the hash tree) for dataBlocks
// 4 KiB blocks.
func veritySidecar(t *testing.T, p string, dataBlocks uint64) {
	t.Helper()
	b := make([]byte, 2*4096)
	copy(b, "verity\x00\x00")
	binary.LittleEndian.PutUint32(b[8:], 1)  // version
	binary.LittleEndian.PutUint32(b[12:], 1) // hash type
	copy(b[16:32], []byte("0123456789abcdef"))
	copy(b[32:], "sha256")
	binary.LittleEndian.PutUint32(b[64:], 4096)
	binary.LittleEndian.PutUint32(b[68:], 4096)
	binary.LittleEndian.PutUint64(b[72:], dataBlocks)
	binary.LittleEndian.PutUint16(b[80:], 4)
	copy(b[88:], []byte{1, 2, 3, 4})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// plan shows per chosen image whether it is protected by dm-verity and
// signed, from its dissection; nothing is set up.
func TestPlanProtection(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, "usr/lib/f"), []byte(strings.Repeat("x", 9000)), 0o644)
	sx := filepath.Join(dir, "etc/flatcar/sysext")
	os.MkdirAll(sx, 0o755)
	for _, n := range []string{"plain", "ver", "sig"} {
		testutil.MakeSquashfs(t, src, filepath.Join(sx, n+".raw"))
	}
	st, _ := os.Stat(filepath.Join(sx, "ver.raw"))
	for _, n := range []string{"ver", "sig"} {
		veritySidecar(t, filepath.Join(sx, n+".verity"), uint64(st.Size()/4096))
		os.WriteFile(filepath.Join(sx, n+".roothash"), []byte(strings.Repeat("ab", 32)+"\n"), 0o644)
	}
	os.WriteFile(filepath.Join(sx, "sig.roothash.p7s"), []byte("DER"), 0o644)
	os.WriteFile(filepath.Join(sx, "bad.raw"), []byte("not an image"), 0o644)
	// A FIFO sidecar (issue 14 item 5): invalid, and no blocked open.
	testutil.MakeSquashfs(t, src, filepath.Join(sx, "fifo.raw"))
	if err := unix.Mkfifo(filepath.Join(sx, "fifo.roothash"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := openRootFS(t, dir)
	p := &Plan{Choices: []Choice{
		{Name: "plain", Image: "/etc/flatcar/sysext/plain.raw"},
		{Name: "ver", Image: "/etc/flatcar/sysext/moved-away.raw", Fallback: "/etc/flatcar/sysext/ver.raw"},
		{Name: "sig", Image: "/etc/flatcar/sysext/sig.raw"},
		{Name: "bad", Image: "/etc/flatcar/sysext/bad.raw"},
		{Name: "fifo", Image: "/etc/flatcar/sysext/fifo.raw"},
		{Name: "none"},
	}}
	done := make(chan struct{})
	go func() { annotateProtection(root, p); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("annotateProtection blocks (a FIFO sidecar)")
	}
	want := map[string]string{"plain": ProtUnprotected, "ver": ProtVerity, "sig": ProtSigned, "none": ""}
	for _, c := range p.Choices {
		if w, ok := want[c.Name]; ok && c.Protection != w {
			t.Errorf("%s: protection %q, want %q", c.Name, c.Protection, w)
		}
		if c.Name == "bad" && !strings.HasPrefix(c.Protection, "invalid (") {
			t.Errorf("bad: protection %q", c.Protection)
		}
		if c.Name == "fifo" && !strings.Contains(c.Protection, "fifo.roothash: is a FIFO, not a regular file") {
			t.Errorf("fifo: protection %q", c.Protection)
		}
	}
}

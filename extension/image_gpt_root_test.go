package extension

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostileGPT writes a 1 MiB file whose primary GPT header (valid
// signature, revision and header CRC) claims 0xffffffff-byte partition
// entries: u-root's gpt.Table allocates NPart*PartSize bytes from it
// before any check, which took the whole merge down with "runtime: out
// of memory" (issue 8 item 3).
func hostileGPT(t *testing.T, p string, entrySize, entries uint32) {
	t.Helper()
	b := make([]byte, 1<<20)
	h := b[512:]
	copy(h, "EFI PART")
	le := binary.LittleEndian
	le.PutUint32(h[8:], 0x10000)
	le.PutUint32(h[12:], 92)
	le.PutUint64(h[24:], 1)    // current LBA
	le.PutUint64(h[32:], 2047) // backup LBA
	le.PutUint64(h[40:], 34)   // first usable
	le.PutUint64(h[48:], 2014) // last usable
	le.PutUint64(h[72:], 2)    // entries at LBA 2
	le.PutUint32(h[80:], entries)
	le.PutUint32(h[84:], entrySize)
	le.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, b, 0o644))
}

// TestHostileGPTSkipped: the hostile image is skipped with an error that
// names the file and the rule; the good confext next to it merges.
func TestHostileGPTSkipped(t *testing.T) {
	r := testRoot(t, "symlink")
	rawImage(t, r, "squashfs", "good")
	hostileGPT(t, filepath.Join(r, "usr/lib/confexts/hostile.raw"), 0xffffffff, 128)
	hostileGPT(t, filepath.Join(r, "usr/lib/confexts/hostilecount.raw"), 128, 0xffffffff)
	res, err := Merge(context.Background(), opts(r, "yes"))
	must(t, err)
	if strings.Join(res.Merged, ",") != "good" {
		t.Fatalf("merged %v, skipped %v", res.Merged, res.Skipped)
	}
	if _, err := os.Stat(filepath.Join(r, "etc/good.conf")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"hostile": "partition entry size 4294967295", "hostilecount": "partition entry count 4294967295"}
	for _, s := range res.Skipped {
		rule, ok := want[s.Name]
		if !ok {
			continue
		}
		delete(want, s.Name)
		if !strings.Contains(s.Reason, s.Name+".raw") || !strings.Contains(s.Reason, rule) {
			t.Errorf("reason for %s does not name the file and the rule %q: %q", s.Name, rule, s.Reason)
		}
	}
	if len(want) != 0 {
		t.Fatalf("not skipped: %v (skipped %v)", want, res.Skipped)
	}
}

package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// gptSpec describes a GPT for mkGPT; zero fields get sane values.
type gptSpec struct {
	SectorSize   int64
	Sectors      int64 // file size in sectors
	HeaderSize   uint32
	EntrySize    uint32
	Entries      uint32
	PartStart    uint64
	FirstLBA     uint64
	LastLBA      uint64
	Parts        []gptTestPart
	BadHeaderCRC bool
	BadArrayCRC  bool
}

type gptTestPart struct {
	Type, UUID  string
	First, Last uint64
	Attrs       uint64
	Name        string
}

// guidBytes encodes a text GUID in GPT's mixed-endian form.
func guidBytes(s string) []byte {
	h, err := ParseRootHash(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(h) != 16 {
		panic("bad guid " + s)
	}
	b := make([]byte, 16)
	b[0], b[1], b[2], b[3] = h[3], h[2], h[1], h[0]
	b[4], b[5] = h[5], h[4]
	b[6], b[7] = h[7], h[6]
	copy(b[8:], h[8:])
	return b
}

// mkGPT builds a disk image with a primary GPT (CRCs computed).
func mkGPT(s gptSpec) []byte {
	if s.SectorSize == 0 {
		s.SectorSize = 512
	}
	if s.Sectors == 0 {
		s.Sectors = 4096
	}
	if s.HeaderSize == 0 {
		s.HeaderSize = 92
	}
	if s.EntrySize == 0 {
		s.EntrySize = 128
	}
	if s.Entries == 0 {
		s.Entries = 128
	}
	if s.PartStart == 0 {
		s.PartStart = 2
	}
	arraySectors := (uint64(s.Entries)*uint64(s.EntrySize) + uint64(s.SectorSize) - 1) / uint64(s.SectorSize)
	if s.FirstLBA == 0 {
		s.FirstLBA = 2 + arraySectors
	}
	if s.LastLBA == 0 {
		s.LastLBA = uint64(s.Sectors) - 2 - arraySectors
	}
	b := make([]byte, s.Sectors*s.SectorSize)
	le := binary.LittleEndian
	var array []byte
	if n := uint64(s.Entries) * uint64(s.EntrySize); n < 1<<22 {
		array = make([]byte, n)
		for i, p := range s.Parts {
			e := array[i*int(s.EntrySize):]
			copy(e[0:], guidBytes(p.Type))
			copy(e[16:], guidBytes(p.UUID))
			le.PutUint64(e[32:], p.First)
			le.PutUint64(e[40:], p.Last)
			le.PutUint64(e[48:], p.Attrs)
			for j, c := range p.Name {
				le.PutUint16(e[56+2*j:], uint16(c))
			}
		}
		if off := int64(s.PartStart) * s.SectorSize; off < int64(len(b)) {
			copy(b[off:], array)
		}
	}
	h := b[s.SectorSize:]
	copy(h, "EFI PART")
	le.PutUint32(h[8:], 0x10000)
	le.PutUint32(h[12:], s.HeaderSize)
	le.PutUint64(h[24:], 1)
	le.PutUint64(h[32:], uint64(s.Sectors)-1)
	le.PutUint64(h[40:], s.FirstLBA)
	le.PutUint64(h[48:], s.LastLBA)
	copy(h[56:], guidBytes("11111111-2222-3333-4444-555555555555"))
	le.PutUint64(h[72:], s.PartStart)
	le.PutUint32(h[80:], s.Entries)
	le.PutUint32(h[84:], s.EntrySize)
	ac := crc32.ChecksumIEEE(array)
	if s.BadArrayCRC {
		ac++
	}
	le.PutUint32(h[88:], ac)
	hs := min(int64(s.HeaderSize), s.SectorSize)
	c := crc32.ChecksumIEEE(h[:hs])
	if s.BadHeaderCRC {
		c++
	}
	le.PutUint32(h[16:], c)
	return b
}

const (
	x86Root   = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
	x86Verity = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"
)

func TestReadGPTGood(t *testing.T) {
	for _, ss := range []int64{512, 4096} {
		img := mkGPT(gptSpec{SectorSize: ss, Sectors: 2048, Parts: []gptTestPart{
			{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 40, Last: 99, Attrs: 1 << 60, Name: "root-x86-64"},
			{Type: x86Verity, UUID: "12345678-9abc-def0-1234-56789abcdef0", First: 100, Last: 109, Name: "v"},
		}})
		g, err := ReadGPT(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatalf("%d: %v", ss, err)
		}
		if g.SectorSize != ss || len(g.Partitions) != 2 {
			t.Fatalf("%d: %+v", ss, g)
		}
		p := g.Partitions[0]
		if p.Type != x86Root || p.UUID != "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" || p.Name != "root-x86-64" ||
			p.Region != (Region{Offset: 40 * uint64(ss), Size: 60 * uint64(ss)}) || p.Attrs != 1<<60 || p.Number != 1 {
			t.Errorf("%d: partition %+v", ss, p)
		}
		if Designator("x86-64", g.Partitions[1].Type) != "root-verity" || Designator("arm64", p.Type) != "" {
			t.Error("designators")
		}
	}
}

// TestReadGPTSgdisk reads a table written by sgdisk (the u-root path).
func TestReadGPTSgdisk(t *testing.T) {
	testutil.RequireTool(t, "sgdisk")
	p := filepath.Join(t.TempDir(), "d.raw")
	if err := os.WriteFile(p, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sgdisk", "-n", "1:2048:4095", "-t", "1:"+x86Root, "-c", "1:USR-A", p).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := ReadGPT(f, SizeOf(f))
	if err != nil || len(g.Partitions) != 1 || g.Partitions[0].Name != "USR-A" || g.Partitions[0].Region.Offset != 2048*512 {
		t.Fatalf("%+v %v", g, err)
	}
}

func TestReadGPTRules(t *testing.T) {
	part := []gptTestPart{{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 40, Last: 99}}
	for _, c := range []struct {
		name string
		s    gptSpec
		rule string
	}{
		{"huge entry size", gptSpec{EntrySize: 0xffffffff}, "partition entry size 4294967295"},
		{"entry size not 128*2^n", gptSpec{EntrySize: 384}, "partition entry size 384"},
		{"entry size too small", gptSpec{EntrySize: 64}, "partition entry size 64"},
		{"huge count", gptSpec{Entries: 0xffffffff}, "partition entry count 4294967295"},
		{"array too big", gptSpec{Entries: 1024, EntrySize: 4096}, "exceeds"},
		{"array beyond file", gptSpec{Sectors: 64, Entries: 128, FirstLBA: 40, LastLBA: 50, PartStart: 60}, "beyond the end of the file"},
		{"first after last", gptSpec{FirstLBA: 100, LastLBA: 50}, "first usable LBA 100 is after last usable LBA 50"},
		{"last beyond file", gptSpec{Sectors: 256, LastLBA: 10000}, "last usable LBA 10000 is beyond the end"},
		{"header size", gptSpec{HeaderSize: 600}, "header size 600"},
		{"header crc", gptSpec{BadHeaderCRC: true}, "header CRC"},
		{"array crc", gptSpec{BadArrayCRC: true, Parts: part}, "array CRC"},
		{"partition outside", gptSpec{Parts: []gptTestPart{{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 40, Last: 1 << 40}}}, "outside the usable area"},
		{"partition reversed", gptSpec{Parts: []gptTestPart{{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 90, Last: 40}}}, "first LBA 90 is after last LBA 40"},
		{"array in usable area", gptSpec{FirstLBA: 2}, "overlaps the usable area"},
		{"array LBA overflows", gptSpec{PartStart: 1 << 52}, "not after the header"},
		{"last LBA overflows", gptSpec{LastLBA: 1 << 52}, "beyond the end of the file"},
	} {
		img := mkGPT(c.s)
		_, err := ReadGPT(bytes.NewReader(img), int64(len(img)))
		var ge *GPTError
		if !errors.As(err, &ge) || !strings.Contains(err.Error(), c.rule) {
			t.Errorf("%s: error %v, want a GPTError with %q", c.name, err, c.rule)
		}
	}
	if _, err := ReadGPT(bytes.NewReader(make([]byte, 8192)), 8192); !errors.Is(err, ErrNoGPT) {
		t.Errorf("zeroes: %v", err)
	}
}

func FuzzReadGPT(f *testing.F) {
	f.Add(mkGPT(gptSpec{Sectors: 128, Parts: []gptTestPart{{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 40, Last: 99}}}))
	f.Add(mkGPT(gptSpec{SectorSize: 4096, Sectors: 64, Entries: 4}))
	f.Add(mkGPT(gptSpec{Sectors: 64, EntrySize: 0xffffffff}))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ReadGPT(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range g.Partitions {
			if p.Region.Offset+p.Region.Size > uint64(len(b)) {
				t.Fatalf("partition %d beyond the file", p.Number)
			}
		}
	})
}

// changingReader serves img, except that every read of the header's
// fields after the first one sees evil instead: a file being rewritten, or
// a hostile block device answering differently each time. It records the
// number of header reads and the largest read asked for, and refuses a
// read over gptMaxArray (the largest array a checked header allows).
type changingReader struct {
	img, evil   []byte
	ss          int64
	headerReads int
	maxRead     int
}

func (c *changingReader) ReadAt(p []byte, off int64) (int, error) {
	c.maxRead = max(c.maxRead, len(p))
	if len(p) > gptMaxArray {
		return 0, errors.New("read larger than any checked GPT array")
	}
	src := c.img
	// Fields past the 8-byte signature: what a parser decodes.
	if off < c.ss+gptMinHeaderSize && off+int64(len(p)) > c.ss+8 {
		c.headerReads++
		if c.headerReads > 1 {
			src = c.evil
		}
	}
	return bytes.NewReader(src).ReadAt(p, off)
}

// evilHeader returns img with the primary header's entry size set to
// entrySize (CRC not updated: u-root allocates before it checks).
func evilHeader(img []byte, ss int64, entrySize uint32) []byte {
	evil := append([]byte(nil), img...)
	binary.LittleEndian.PutUint32(evil[ss+84:], entrySize)
	return evil
}

// TestReadGPTHeaderReadOnce (issue 14 item 8): the header is read once and
// the entries are decoded from the array whose CRC was checked. Before,
// u-root's gpt.Table read the header a second time and allocated
// 128 x entry size from that copy before any check (64 MiB entries: an
// 8 GiB allocation, "out of memory"); here the second copy claims 4 MiB
// entries, so the old code asks for a 512 MiB read, which the reader
// refuses and records.
func TestReadGPTHeaderReadOnce(t *testing.T) {
	img := mkGPT(gptSpec{Sectors: 2048, Parts: []gptTestPart{
		{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 40, Last: 99, Name: "root-x86-64"},
	}})
	r := &changingReader{img: img, evil: evilHeader(img, 512, 4<<20), ss: 512}
	g, err := ReadGPT(r, int64(len(img)))
	if err != nil {
		t.Fatalf("ReadGPT: %v (header reads %d, largest read %d bytes)", err, r.headerReads, r.maxRead)
	}
	if r.headerReads != 1 {
		t.Errorf("the header was read %d times, want once", r.headerReads)
	}
	if r.maxRead > 128*128 {
		t.Errorf("largest read %d bytes, more than the 128 x 128-byte array the checked header claims", r.maxRead)
	}
	if len(g.Partitions) != 1 || g.Partitions[0].Name != "root-x86-64" {
		t.Errorf("partitions %+v", g.Partitions)
	}
}

// FuzzReadGPTChanging: whatever a second look at the header would show,
// ReadGPT reads the header once and never reads (or allocates for) more
// than a checked array.
func FuzzReadGPTChanging(f *testing.F) {
	f.Add(mkGPT(gptSpec{Sectors: 128, Parts: []gptTestPart{{Type: x86Root, UUID: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", First: 40, Last: 99}}}), uint32(64<<20))
	f.Add(mkGPT(gptSpec{SectorSize: 4096, Sectors: 64, Entries: 4}), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, b []byte, entrySize uint32) {
		if len(b) < 1024 {
			return
		}
		for _, ss := range gptSectorSizes {
			if int64(len(b)) < ss+gptMinHeaderSize {
				continue
			}
			r := &changingReader{img: b, evil: evilHeader(b, ss, entrySize), ss: ss}
			ReadGPT(r, int64(len(b)))
			if r.headerReads > 1 || r.maxRead > gptMaxArray {
				t.Fatalf("%d-byte sectors: %d header reads, largest read %d", ss, r.headerReads, r.maxRead)
			}
		}
	})
}

package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"

	"github.com/u-root/u-root/pkg/mount/gpt"
)

// GPT limits. The UEFI specification (5.3) requires the header size to be
// at least 92 bytes and at most one logical block, and the entry size to be
// 128 * 2^n. It does not bound the entry count; we bound the entry array
// to what any real partition table uses so that a header cannot make us
// allocate or loop on a claimed size.
const (
	gptMinHeaderSize = 92
	gptMinEntrySize  = 128
	gptMaxEntrySize  = 4096
	// gptMaxEntries: 128 is what every partitioner writes; some tools
	// allow more, none more than a few hundred.
	gptMaxEntries = 1024
	// gptMaxArray bounds the entry array in bytes (count * entry size).
	gptMaxArray = 1 << 20
)

// gptSectorSizes are the logical block sizes probed for a GPT header, in
// this order (as systemd probes image files whose sector size it does not
// know).
var gptSectorSizes = []int64{512, 4096}

// GPTError is a GPT that breaks a rule; Rule says which.
type GPTError struct {
	Rule string
	Err  error
}

func (e *GPTError) Error() string {
	if e.Err != nil {
		return "GPT: " + e.Rule + ": " + e.Err.Error()
	}
	return "GPT: " + e.Rule
}
func (e *GPTError) Unwrap() error { return e.Err }

// ErrNoGPT is returned by ReadGPT when no GPT signature is found at LBA 1
// for any supported sector size (the file is not a GPT disk image).
var ErrNoGPT = errors.New("no GPT header (\"EFI PART\" at LBA 1 for 512- or 4096-byte sectors)")

// GPTPartition is one used entry of a GPT.
type GPTPartition struct {
	Number   int    // 1-based entry index
	Type     string // type GUID, lowercase text form
	UUID     string // unique partition GUID, lowercase text form
	Name     string // UTF-16 name decoded
	Attrs    uint64
	FirstLBA uint64
	LastLBA  uint64
	Region   Region // byte range in the file
}

// GPT is a validated primary GPT.
type GPT struct {
	SectorSize int64
	DiskGUID   string
	Partitions []GPTPartition // used entries only, in table order
}

// ReadGPT reads and validates the primary GPT of r, whose size is size
// bytes (0 when unknown: then nothing is checked against the end and only
// the fixed bounds apply). Every field of the header is checked before
// anything sized by it is read: signature, revision, header size, header
// CRC, entry size (128 * 2^n, at most 4096), entry count (at most 1024,
// array at most 1 MiB), the entry array inside the file and outside the
// usable area, FirstUsableLBA <= LastUsableLBA inside the file, then the
// array's CRC, and each used entry's FirstLBA <= LastLBA inside the usable
// area. Sectors of 512 and 4096 bytes are probed, in that order.
//
// The entries are decoded from the very bytes whose CRC was checked, in
// u-root's gpt.Part layout; nothing is read twice. u-root's gpt.Table is
// not used: it re-reads the header and allocates NPart * PartSize bytes
// from that second copy before any check, so a file changing under us (or
// a hostile block device) could make it allocate gigabytes.
func ReadGPT(r io.ReaderAt, size int64) (*GPT, error) {
	var firstErr error
	for _, ss := range gptSectorSizes {
		if size > 0 && size < 3*ss {
			continue
		}
		var sig [8]byte
		if n, err := r.ReadAt(sig[:], ss); n < len(sig) {
			if err == nil || err == io.EOF {
				continue
			}
			return nil, &GPTError{Rule: "cannot read the header", Err: err}
		}
		if binary.LittleEndian.Uint64(sig[:]) != gpt.Signature {
			continue
		}
		g, err := readGPTAt(r, size, ss)
		if err == nil {
			return g, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, ErrNoGPT
}

// gptFail builds the GPTError of a rule broken with ss-byte sectors.
func gptFail(ss int64, rule string, a ...any) error {
	return &GPTError{Rule: fmt.Sprintf("%d-byte sectors: ", ss) + fmt.Sprintf(rule, a...)}
}

// readGPTAt reads the GPT for ss-byte sectors: the header (read once and
// checked), the entry array (read once, CRC checked) and the entries
// decoded from that array.
func readGPTAt(r io.ReaderAt, size, ss int64) (*GPT, error) {
	h, err := readGPTHeader(r, ss)
	if err != nil {
		return nil, err
	}
	arrayBytes, err := checkGPTLayout(h, size, ss)
	if err != nil {
		return nil, err
	}
	array := make([]byte, arrayBytes)
	if n, err := r.ReadAt(array, int64(h.PartStart)*ss); int64(n) < arrayBytes {
		return nil, &GPTError{Rule: fmt.Sprintf("cannot read the partition entry array (%d of %d bytes)", n, arrayBytes), Err: err}
	}
	if c := crc32.ChecksumIEEE(array); c != h.PartCRC {
		return nil, gptFail(ss, "partition entry array CRC %08x does not match the computed %08x", h.PartCRC, c)
	}
	return gptPartitions(h, array, ss)
}

// readGPTHeader reads the header sector at LBA 1 once and checks the
// rules of the header itself: revision, header size, header CRC, its own
// location.
func readGPTHeader(r io.ReaderAt, ss int64) (*gpt.Header, error) {
	hdr := make([]byte, ss)
	if n, err := r.ReadAt(hdr, ss); n < len(hdr) {
		return nil, &GPTError{Rule: "cannot read the header sector", Err: err}
	}
	var h gpt.Header
	if err := binary.Read(bytes.NewReader(hdr[:gpt.HeaderSize]), binary.LittleEndian, &h); err != nil {
		return nil, &GPTError{Rule: "cannot decode the header", Err: err}
	}
	if h.Revision != gpt.Revision {
		return nil, gptFail(ss, "revision %#x is not 1.0 (%#x)", h.Revision, gpt.Revision)
	}
	if h.HeaderSize < gptMinHeaderSize || int64(h.HeaderSize) > ss {
		return nil, gptFail(ss, "header size %d is outside %d..%d", h.HeaderSize, gptMinHeaderSize, ss)
	}
	crcBuf := append([]byte(nil), hdr[:h.HeaderSize]...)
	copy(crcBuf[16:20], []byte{0, 0, 0, 0})
	if c := crc32.ChecksumIEEE(crcBuf); c != h.CRC {
		return nil, gptFail(ss, "header CRC %08x does not match the computed %08x", h.CRC, c)
	}
	if h.CurrentLBA != 1 {
		return nil, gptFail(ss, "primary header names LBA %d as its own location, not 1", h.CurrentLBA)
	}
	return &h, nil
}

// checkGPTLayout checks the header's entry size and count and where the
// entry array and the usable area lie, and returns the array's size in
// bytes (at most gptMaxArray): nothing sized by the header is allocated
// before this.
func checkGPTLayout(h *gpt.Header, size, ss int64) (int64, error) {
	if h.PartSize < gptMinEntrySize || h.PartSize > gptMaxEntrySize || h.PartSize&(h.PartSize-1) != 0 {
		return 0, gptFail(ss, "partition entry size %d is not 128 * 2^n within %d..%d", h.PartSize, gptMinEntrySize, gptMaxEntrySize)
	}
	if h.NPart == 0 || h.NPart > gptMaxEntries {
		return 0, gptFail(ss, "partition entry count %d is outside 1..%d", h.NPart, gptMaxEntries)
	}
	arrayBytes := int64(h.NPart) * int64(h.PartSize)
	if arrayBytes > gptMaxArray {
		return 0, gptFail(ss, "partition entry array of %d bytes exceeds %d", arrayBytes, gptMaxArray)
	}
	arraySectors := (arrayBytes + ss - 1) / ss
	const maxLBA = uint64(1) << 40 // 4 PiB at 4096-byte sectors: LBA * sector size never overflows
	if h.PartStart < 2 || h.PartStart > maxLBA {
		return 0, gptFail(ss, "partition entry array at LBA %d is not after the header", h.PartStart)
	}
	if arrayEnd := int64(h.PartStart)*ss + arrayBytes; size > 0 && arrayEnd > size {
		return 0, gptFail(ss, "partition entry array (LBA %d, %d bytes) extends beyond the end of the file (%d bytes)", h.PartStart, arrayBytes, size)
	}
	if h.FirstLBA > h.LastLBA {
		return 0, gptFail(ss, "first usable LBA %d is after last usable LBA %d", h.FirstLBA, h.LastLBA)
	}
	if h.LastLBA > maxLBA || (size > 0 && int64(h.LastLBA+1)*ss > size) {
		return 0, gptFail(ss, "last usable LBA %d is beyond the end of the file (%d bytes)", h.LastLBA, size)
	}
	if arrayLast := h.PartStart + uint64(arraySectors) - 1; h.FirstLBA < 2 || (h.PartStart <= h.LastLBA && arrayLast >= h.FirstLBA) {
		return 0, gptFail(ss, "partition entry array (LBA %d, %d sectors) overlaps the usable area LBA %d..%d", h.PartStart, arraySectors, h.FirstLBA, h.LastLBA)
	}
	return arrayBytes, nil
}

// gptPartitions decodes the used entries of the checked array and checks
// each against the usable area.
func gptPartitions(h *gpt.Header, array []byte, ss int64) (*GPT, error) {
	g := &GPT{SectorSize: ss, DiskGUID: guidText(h.DiskGUID)}
	for i := 0; i < int(h.NPart); i++ {
		var p gpt.Part
		e := array[int64(i)*int64(h.PartSize):]
		if err := binary.Read(bytes.NewReader(e[:gptMinEntrySize]), binary.LittleEndian, &p); err != nil {
			return nil, &GPTError{Rule: fmt.Sprintf("cannot decode partition entry %d", i+1), Err: err}
		}
		if p.PartGUID == (gpt.GUID{}) {
			continue // unused entry
		}
		if p.FirstLBA > p.LastLBA {
			return nil, gptFail(ss, "partition %d: first LBA %d is after last LBA %d", i+1, p.FirstLBA, p.LastLBA)
		}
		if p.FirstLBA < h.FirstLBA || p.LastLBA > h.LastLBA {
			return nil, gptFail(ss, "partition %d: LBA %d..%d is outside the usable area %d..%d", i+1, p.FirstLBA, p.LastLBA, h.FirstLBA, h.LastLBA)
		}
		g.Partitions = append(g.Partitions, GPTPartition{
			Number: i + 1, Type: guidText(p.PartGUID), UUID: guidText(p.UniqueGUID),
			Name: gptName(p.Name), Attrs: uint64(p.Attribute), FirstLBA: p.FirstLBA, LastLBA: p.LastLBA,
			Region: Region{Offset: p.FirstLBA * uint64(ss), Size: (p.LastLBA - p.FirstLBA + 1) * uint64(ss)},
		})
	}
	return g, nil
}

// guidText formats a GPT GUID (mixed-endian on disk) as lowercase text.
func guidText(g gpt.GUID) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", g.L, g.W1, g.W2, g.B[0:2], g.B[2:])
}

// gptName decodes a GPT partition name (UTF-16LE, NUL-terminated).
func gptName(n gpt.PartName) string {
	u := make([]uint16, 0, len(n)/2)
	for i := 0; i+1 < len(n); i += 2 {
		c := uint16(n[i]) | uint16(n[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return strings.ToValidUTF8(string(utf16.Decode(u)), "\uFFFD")
}

// SizeOf returns the size of r when it can tell (an *os.File or anything
// with Size or Seek), else 0.
func SizeOf(r io.ReaderAt) int64 {
	switch v := r.(type) {
	case interface{ Size() int64 }:
		return v.Size()
	case io.Seeker:
		cur, err := v.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0
		}
		end, err := v.Seek(0, io.SeekEnd)
		v.Seek(cur, io.SeekStart)
		if err != nil {
			return 0
		}
		return end
	}
	return 0
}

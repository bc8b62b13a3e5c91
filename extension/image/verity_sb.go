package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// The veritysetup (cryptsetup) on-disk superblock, format 1, 512 bytes,
// little-endian, at the start of the hash device:
//
//	0   signature "verity\0\0"   8
//	8   version (1)              u32
//	12  hash type (0 or 1)       u32
//	16  uuid                     16
//	32  algorithm, NUL-padded    32
//	64  data block size          u32
//	68  hash block size          u32
//	72  data blocks              u64
//	80  salt size                u16
//	82  padding                  6
//	88  salt                     256
//	344 padding                  168
const (
	veritySBSize    = 512
	veritySBMaxSalt = 256
	// Block sizes dm-verity accepts are powers of two from 512 bytes up
	// to the page size; we allow up to 64 KiB pages.
	verityMinBlock = 512
	verityMaxBlock = 65536
)

var veritySBMagic = []byte("verity\x00\x00")

// verityDigestSizes are the hash algorithms we set up, with their digest
// sizes (the hash tree's geometry depends on it).
var verityDigestSizes = map[string]int{"sha1": 20, "sha256": 32, "sha512": 64}

// VeritySBError is a verity superblock that breaks a rule.
type VeritySBError struct{ Rule string }

func (e *VeritySBError) Error() string { return "verity superblock: " + e.Rule }

// ParseVeritySuperblock reads and checks the superblock at the start of
// r. Every field is bounded: magic, version 1, hash type 0 or 1, a known
// NUL-terminated algorithm, power-of-two block sizes within 512..65536,
// a data block count > 0 whose byte size does not overflow, a salt of at
// most 256 bytes and zero padding around it.
func ParseVeritySuperblock(r io.Reader) (VeritySuperblock, error) {
	var b [veritySBSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return VeritySuperblock{}, &VeritySBError{Rule: fmt.Sprintf("cannot read %d bytes: %v", veritySBSize, err)}
	}
	fail := func(f string, a ...any) (VeritySuperblock, error) {
		return VeritySuperblock{}, &VeritySBError{Rule: fmt.Sprintf(f, a...)}
	}
	if !bytes.Equal(b[0:8], veritySBMagic) {
		return fail("no \"verity\" magic")
	}
	le := binary.LittleEndian
	sb := VeritySuperblock{
		Version: le.Uint32(b[8:]), HashType: le.Uint32(b[12:]),
		DataBlockSize: le.Uint32(b[64:]), HashBlockSize: le.Uint32(b[68:]), DataBlocks: le.Uint64(b[72:]),
	}
	if sb.Version != 1 {
		return fail("version %d is not 1", sb.Version)
	}
	if sb.HashType > 1 {
		return fail("hash type %d is not 0 or 1", sb.HashType)
	}
	alg := b[32:64]
	n := bytes.IndexByte(alg, 0)
	if n <= 0 {
		return fail("algorithm name is empty or not NUL-terminated")
	}
	for _, c := range alg[n:] {
		if c != 0 {
			return fail("algorithm field has bytes after its NUL")
		}
	}
	sb.Algorithm = string(alg[:n])
	if _, ok := verityDigestSizes[sb.Algorithm]; !ok {
		return fail("hash algorithm %q is not one of sha1, sha256, sha512", sb.Algorithm)
	}
	for _, bs := range []struct {
		what string
		v    uint32
	}{{"data", sb.DataBlockSize}, {"hash", sb.HashBlockSize}} {
		if bs.v < verityMinBlock || bs.v > verityMaxBlock || bs.v&(bs.v-1) != 0 {
			return fail("%s block size %d is not a power of two within %d..%d", bs.what, bs.v, verityMinBlock, verityMaxBlock)
		}
	}
	if sb.DataBlocks == 0 {
		return fail("data block count is 0")
	}
	if sb.DataBlocks > (1<<63-1)/uint64(sb.DataBlockSize) {
		return fail("data block count %d overflows the data size", sb.DataBlocks)
	}
	saltSize := int(le.Uint16(b[80:]))
	if saltSize > veritySBMaxSalt {
		return fail("salt size %d exceeds %d", saltSize, veritySBMaxSalt)
	}
	for _, c := range b[88+saltSize : 88+veritySBMaxSalt] {
		if c != 0 {
			return fail("salt field has bytes beyond its %d-byte salt", saltSize)
		}
	}
	sb.Salt = append([]byte(nil), b[88:88+saltSize]...)
	u := b[16:32]
	sb.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	return sb, nil
}

// HashTreeSize returns the bytes the hash tree of sb needs after the
// superblock's hash block (dm-verity's geometry: each level holds the
// digests of the level below, 2^k digests per hash block), or an error
// when the algorithm is unknown.
func HashTreeSize(sb VeritySuperblock) (uint64, error) {
	ds, ok := verityDigestSizes[sb.Algorithm]
	if !ok {
		return 0, &VeritySBError{Rule: fmt.Sprintf("unknown algorithm %q", sb.Algorithm)}
	}
	per := uint64(1)
	for per*2*uint64(ds) <= uint64(sb.HashBlockSize) {
		per *= 2
	}
	var total uint64
	blocks := sb.DataBlocks
	for {
		blocks = (blocks + per - 1) / per
		total += blocks
		if blocks <= 1 {
			break
		}
	}
	return total * uint64(sb.HashBlockSize), nil
}

// checkVerityGeometry checks that the data area holds sb's data blocks
// and the hash area (superblock block plus tree) fits in hashSize.
func checkVerityGeometry(sb VeritySuperblock, dataSize, hashSize uint64) error {
	if need := sb.DataBlocks * uint64(sb.DataBlockSize); dataSize != 0 && need > dataSize {
		return &VeritySBError{Rule: fmt.Sprintf("covers %d data bytes but the data area has %d", need, dataSize)}
	}
	tree, err := HashTreeSize(sb)
	if err != nil {
		return err
	}
	if need := uint64(sb.HashBlockSize) + tree; hashSize != 0 && need > hashSize {
		return &VeritySBError{Rule: fmt.Sprintf("hash tree needs %d bytes but the hash area has %d", need, hashSize)}
	}
	return nil
}

package payload

import (
	"bytes"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Operation types of update_metadata.proto's InstallOperation.Type.
const (
	OpReplace   = 0
	OpReplaceBZ = 1
	OpMove      = 2
	OpBsdiff    = 3
)

// Op is one partition operation, checked by Manifest.check.
type Op struct {
	Type       uint64
	DataOffset uint64 // from the end of the manifest
	DataLength uint64
	// DstStart and DstBlocks are the single destination extent.
	DstStart, DstBlocks uint64
	// Hash is data_sha256_hash (required here).
	Hash []byte

	hasOffset, hasLength bool
	dstCount, srcCount   int
}

// Manifest is the part of DeltaArchiveManifest this package uses.
type Manifest struct {
	Ops       []Op
	NoopOps   int
	BlockSize uint64
	// SigOffset and SigSize place the signature blob (from the end of the
	// manifest); both are required.
	SigOffset, SigSize uint64
	// NewSize and NewHash are new_partition_info: the image's size and
	// SHA-256.
	NewSize uint64
	NewHash []byte

	hasSigOffset, hasSigSize, hasNewSize bool
}

// Field numbers of update_metadata.proto (proto2, package
// chromeos_update_engine).
const (
	fManifestOps       = 1
	fManifestNoops     = 2
	fManifestBlockSize = 3
	fManifestSigOffset = 4
	fManifestSigSize   = 5
	fManifestNewInfo   = 9

	fOpType       = 1
	fOpDataOffset = 2
	fOpDataLength = 3
	fOpSrcExtents = 4
	fOpDstExtents = 6
	fOpHash       = 8

	fExtentStart  = 1
	fExtentBlocks = 2

	fInfoSize = 1
	fInfoHash = 2

	fSignatures  = 1
	fSigVersion  = 1
	fSigData     = 2
	defaultBlock = 4096
)

// field is one decoded protobuf field: varint value or bytes.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// walk calls fn for every field of the message b, refusing malformed
// encodings and groups (none of these messages has one).
func walk(b []byte, what string, fn func(field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errf("%s: bad field tag: %v", what, protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		default:
			return errf("%s: field %d has unsupported wire type %d", what, num, typ)
		}
		if n < 0 {
			return errf("%s: field %d: %v", what, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// want checks that f has the wire type the schema gives its number.
func (f field) want(t protowire.Type, what string) error {
	if f.typ != t {
		return errf("%s: field %d has wire type %d, want %d", what, f.num, f.typ, t)
	}
	return nil
}

// ParseManifest decodes a DeltaArchiveManifest and checks it against lim:
// the operation count while decoding, then every range (see check).
// Unknown fields are skipped as proto2 requires.
func ParseManifest(b []byte, lim Limits) (*Manifest, error) {
	lim = lim.withDefaults()
	m := &Manifest{BlockSize: defaultBlock}
	err := walk(b, "manifest", func(f field) error {
		switch f.num {
		case fManifestOps, fManifestNoops:
			if err := f.want(protowire.BytesType, "manifest"); err != nil {
				return err
			}
			if len(m.Ops)+m.NoopOps >= lim.MaxOps {
				return errf("manifest: more than %d operations", lim.MaxOps)
			}
			if f.num == fManifestNoops {
				m.NoopOps++
				return nil
			}
			op, err := parseOp(f.b, len(m.Ops))
			if err != nil {
				return err
			}
			m.Ops = append(m.Ops, op)
		case fManifestBlockSize:
			m.BlockSize = f.v
		case fManifestSigOffset:
			m.SigOffset, m.hasSigOffset = f.v, true
		case fManifestSigSize:
			m.SigSize, m.hasSigSize = f.v, true
		case fManifestNewInfo:
			if err := f.want(protowire.BytesType, "manifest"); err != nil {
				return err
			}
			return walk(f.b, "new_partition_info", func(g field) error {
				switch g.num {
				case fInfoSize:
					m.NewSize, m.hasNewSize = g.v, true
				case fInfoHash:
					m.NewHash = bytes.Clone(g.b)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, m.check(lim)
}

func parseOp(b []byte, i int) (Op, error) {
	what := fmt.Sprintf("operation %d", i)
	var op Op
	err := walk(b, what, func(f field) error {
		switch f.num {
		case fOpType:
			op.Type = f.v
		case fOpDataOffset:
			op.DataOffset, op.hasOffset = f.v, true
		case fOpDataLength:
			op.DataLength, op.hasLength = f.v, true
		case fOpSrcExtents:
			op.srcCount++
		case fOpDstExtents:
			if err := f.want(protowire.BytesType, what); err != nil {
				return err
			}
			op.dstCount++
			return walk(f.b, what+" extent", func(g field) error {
				switch g.num {
				case fExtentStart:
					op.DstStart = g.v
				case fExtentBlocks:
					op.DstBlocks = g.v
				}
				return nil
			})
		case fOpHash:
			op.Hash = bytes.Clone(f.b)
		}
		return nil
	})
	return op, err
}

// check bounds every size and range in m before any of it is used: the
// image size, the block size, each operation's type, data range and
// extent, and the signature blob; data blobs must be contiguous from 0 up
// to the signature blob, and the extents must fill the image in order.
func (m *Manifest) check(lim Limits) error {
	if !m.hasNewSize || len(m.NewHash) != 32 {
		return errf("manifest: new_partition_info needs a size and a 32-byte SHA-256")
	}
	if m.NewSize == 0 || m.NewSize > lim.MaxImage {
		return errf("manifest: image size %d outside 1..%d (configured maximum)", m.NewSize, lim.MaxImage)
	}
	if m.BlockSize == 0 || m.BlockSize > 1<<20 || m.BlockSize&(m.BlockSize-1) != 0 {
		return errf("manifest: block size %d is not a power of two up to 1 MiB", m.BlockSize)
	}
	if !m.hasSigOffset || !m.hasSigSize {
		return errf("manifest: unsigned payload (no signatures_offset/size)")
	}
	if m.SigSize == 0 || m.SigSize > lim.MaxSignatures {
		return errf("manifest: signature blob size %d outside 1..%d", m.SigSize, lim.MaxSignatures)
	}
	if len(m.Ops) == 0 {
		return errf("manifest: no operations")
	}
	var data, dst uint64
	for i, op := range m.Ops {
		if err := op.check(i, m.BlockSize, data, dst, m.NewSize); err != nil {
			return err
		}
		data += op.DataLength
		dst += op.DstBlocks * m.BlockSize
	}
	if dst < m.NewSize {
		return errf("manifest: operations cover %d bytes of a %d-byte image", dst, m.NewSize)
	}
	if data != m.SigOffset {
		return errf("manifest: data blobs end at %d, signature blob starts at %d", data, m.SigOffset)
	}
	return nil
}

// check bounds one operation: REPLACE or REPLACE_BZ only, required fields,
// its blob right after the previous one, one destination extent starting
// where the previous ended and not beyond the image by a whole block.
func (op *Op) check(i int, bs, data, dst, size uint64) error {
	switch {
	case op.Type != OpReplace && op.Type != OpReplaceBZ:
		return errf("operation %d: type %d refused (only REPLACE and REPLACE_BZ)", i, op.Type)
	case !op.hasOffset || !op.hasLength || op.DataLength == 0:
		return errf("operation %d: needs data_offset and a non-zero data_length", i)
	case op.DataOffset > math.MaxUint32 || op.DataLength > math.MaxUint32:
		return errf("operation %d: data range beyond uint32", i)
	case op.DataOffset != data:
		return errf("operation %d: data at %d, expected %d (blobs must be contiguous and in order)", i, op.DataOffset, data)
	case op.srcCount != 0 || op.dstCount != 1:
		return errf("operation %d: needs exactly one destination extent and no source", i)
	case len(op.Hash) != 32:
		return errf("operation %d: needs a 32-byte data_sha256_hash", i)
	case dst >= size:
		return errf("operation %d: starts at or beyond the image end %d", i, size)
	case op.DstStart > math.MaxUint64/bs || op.DstStart*bs != dst:
		return errf("operation %d: extent starts at block %d, expected byte %d (extents must fill the image in order)", i, op.DstStart, dst)
	// delta_generator gives a short last chunk a whole chunk's extent, so
	// an extent may pass the image end by up to one chunk.
	case op.DstBlocks == 0 || op.DstBlocks > (size-dst+ChunkSize)/bs+1:
		return errf("operation %d: extent of %d blocks out of range", i, op.DstBlocks)
	case op.Type == OpReplaceBZ && op.DataLength > maxBZ(op.OutLen(bs, size)):
		return errf("operation %d: REPLACE_BZ data of %d bytes for %d bytes of image", i, op.DataLength, op.OutLen(bs, size))
	case op.Type == OpReplace && op.DataLength != op.OutLen(bs, size):
		return errf("operation %d: REPLACE data of %d bytes, its extent takes %d", i, op.DataLength, op.OutLen(bs, size))
	}
	return nil
}

// maxBZ bounds the compressed size of n bytes: bzip2 grows incompressible
// data by about 1% (and a generator stores such a chunk as REPLACE), so an
// eighth plus a block is generous and keeps the whole payload within about
// 9/8 of the image bound.
func maxBZ(n uint64) uint64 { return n + n/8 + 4096 }

// OutLen is how many image bytes op writes: its extent, cut at the image
// end (delta_generator gives the short last chunk a full extent).
func (op *Op) OutLen(bs, size uint64) uint64 {
	start := op.DstStart * bs
	return min(op.DstBlocks*bs, size-start)
}

// ParseSignatures decodes a Signatures message into the signature data of
// each entry (the version is not used: any entry may verify).
func ParseSignatures(b []byte) ([][]byte, error) {
	var out [][]byte
	err := walk(b, "signatures", func(f field) error {
		if f.num != fSignatures {
			return nil
		}
		if err := f.want(protowire.BytesType, "signatures"); err != nil {
			return err
		}
		if len(out) >= maxSignatureCount {
			return errf("signatures: more than %d entries", maxSignatureCount)
		}
		var data []byte
		if err := walk(f.b, "signature", func(g field) error {
			if g.num == fSigData {
				data = g.b
			}
			return nil
		}); err != nil {
			return err
		}
		out = append(out, data)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = errf("signatures: no entries")
	}
	return out, err
}

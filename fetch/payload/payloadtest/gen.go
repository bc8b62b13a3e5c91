// Package payloadtest builds CrAU payloads for tests, written from the
// format's description (update_metadata.proto and delta_generator's full
// payload, see docs/fetch.md), independently of the parser in package
// payload, so that the two check each other. Hooks let tests break one
// rule at a time.
package payloadtest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math"
	"os/exec"

	"google.golang.org/protobuf/encoding/protowire"
)

// Compression picks the operation type per chunk.
type Compression int

const (
	// Auto is delta_generator's rule: REPLACE_BZ when the compressed
	// chunk is smaller, else REPLACE.
	Auto Compression = iota
	// Replace stores every chunk as is.
	Replace
	// ReplaceBZ compresses every chunk.
	ReplaceBZ
)

// Op is one operation as the generator encodes it; hooks may change it.
type Op struct {
	Type                 uint64
	DataOffset, DataLen  uint64
	DstStart, DstBlocks  uint64
	Hash                 []byte
	Data                 []byte
	SrcExtent, TwoDst    bool
	OmitHash, OmitOffset bool
}

// Manifest is what the generator encodes; hooks may change it after the
// honest values are computed and before it is signed.
type Manifest struct {
	Ops        []Op
	BlockSize  uint64
	SigOffset  uint64
	SigSize    uint64
	NewSize    uint64
	NewHash    []byte
	NoSigField bool
}

// Options configure Build.
type Options struct {
	// Keys sign the payload; with N keys the versions run from 3-N to 2,
	// as delta_generator numbers them.
	Keys        []*rsa.PrivateKey
	Compression Compression
	// ChunkSize is the image bytes per operation (default 1 MiB).
	ChunkSize int
	// EditManifest, when set, changes the manifest before it is signed.
	EditManifest func(*Manifest)
	// EditSignatures, when set, changes the signature data after signing.
	EditSignatures func([][]byte)
}

const blockSize = 4096

// Build returns a full payload carrying img.
func Build(img []byte, o Options) ([]byte, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = 1 << 20
	}
	m := &Manifest{BlockSize: blockSize, NewSize: uint64(len(img))}
	sum := sha256.Sum256(img)
	m.NewHash = sum[:]
	var off uint64
	for start := 0; start < len(img); start += o.ChunkSize {
		chunk := img[start:min(start+o.ChunkSize, len(img))]
		op := Op{Type: 0, Data: chunk}
		if o.Compression != Replace {
			bz, err := Bzip2(chunk)
			if err != nil {
				return nil, err
			}
			if o.Compression == ReplaceBZ || len(bz) < len(chunk) {
				op.Type, op.Data = 1, bz
			}
		}
		h := sha256.Sum256(op.Data)
		op.Hash, op.DataOffset, op.DataLen = h[:], off, uint64(len(op.Data))
		op.DstStart, op.DstBlocks = uint64(start/blockSize), uint64(o.ChunkSize/blockSize)
		off += op.DataLen
		m.Ops = append(m.Ops, op)
	}
	m.SigOffset = off
	m.SigSize = uint64(len(encodeSignatures(make([][]byte, len(o.Keys)), o.Keys)))
	if o.EditManifest != nil {
		o.EditManifest(m)
	}
	var buf bytes.Buffer
	mb := encodeManifest(m)
	buf.WriteString("CrAU")
	binary.Write(&buf, binary.BigEndian, uint64(1))
	binary.Write(&buf, binary.BigEndian, uint64(len(mb)))
	buf.Write(mb)
	for _, op := range m.Ops {
		buf.Write(op.Data)
	}
	digest := sha256.Sum256(buf.Bytes())
	sigs := make([][]byte, len(o.Keys))
	for i, k := range o.Keys {
		s, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, digest[:])
		if err != nil {
			return nil, err
		}
		sigs[i] = s
	}
	if o.EditSignatures != nil {
		o.EditSignatures(sigs)
	}
	buf.Write(encodeSignatures(sigs, o.Keys))
	return buf.Bytes(), nil
}

func encodeExtent(start, blocks uint64) []byte {
	var e []byte
	e = protowire.AppendTag(e, 1, protowire.VarintType)
	e = protowire.AppendVarint(e, start)
	e = protowire.AppendTag(e, 2, protowire.VarintType)
	return protowire.AppendVarint(e, blocks)
}

func encodeOp(op Op) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, op.Type)
	if !op.OmitOffset {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, op.DataOffset)
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, op.DataLen)
	if op.SrcExtent {
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, encodeExtent(0, 1))
	}
	n := 1
	if op.TwoDst {
		n = 2
	}
	for i := 0; i < n; i++ {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendBytes(b, encodeExtent(op.DstStart, op.DstBlocks))
	}
	if !op.OmitHash {
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, op.Hash)
	}
	return b
}

func encodeManifest(m *Manifest) []byte {
	var b []byte
	for _, op := range m.Ops {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, encodeOp(op))
	}
	// The signature noop: old clients need it; its extent is a hole.
	noop := Op{Type: 0, DataOffset: m.SigOffset, DataLen: m.SigSize, DstStart: math.MaxUint64,
		DstBlocks: (m.SigSize + blockSize - 1) / blockSize, OmitHash: true}
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, encodeOp(noop))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, m.BlockSize)
	if !m.NoSigField {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, m.SigOffset)
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, m.SigSize)
	}
	var info []byte
	info = protowire.AppendTag(info, 1, protowire.VarintType)
	info = protowire.AppendVarint(info, m.NewSize)
	info = protowire.AppendTag(info, 2, protowire.BytesType)
	info = protowire.AppendBytes(info, m.NewHash)
	b = protowire.AppendTag(b, 9, protowire.BytesType)
	return protowire.AppendBytes(b, info)
}

// encodeSignatures encodes Signatures; a nil entry stands for a zero
// signature of its key's size (to learn the blob size before signing).
func encodeSignatures(sigs [][]byte, keys []*rsa.PrivateKey) []byte {
	var b []byte
	for i, s := range sigs {
		if s == nil {
			s = make([]byte, keys[i].Size())
		}
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.VarintType)
		e = protowire.AppendVarint(e, uint64(3-len(sigs)+i))
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendBytes(e, s)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

// Bzip2 compresses data with the bzip2 program (the standard library only
// decompresses).
func Bzip2(data []byte) ([]byte, error) {
	cmd := exec.Command("bzip2", "-c", "-9")
	cmd.Stdin = bytes.NewReader(data)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bzip2: %v: %s", err, errb.String())
	}
	return out.Bytes(), nil
}

// NewKey makes a throwaway RSA-2048 key.
func NewKey() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) }

// PublicPEM encodes k's public key as update-payload-key.pub.pem does.
func PublicPEM(k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

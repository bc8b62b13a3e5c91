package payload

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Verified is a payload whose header, manifest and signature checked out;
// only Receive makes one, so Extract cannot run on an unverified payload.
type Verified struct {
	m         *Manifest
	dataStart int64 // file offset of the first data blob
	// opBad is the first operation whose blob did not match its hash
	// (-1 for none); reported only after the signature verified.
	opBad int
}

// Manifest returns the verified manifest.
func (v *Verified) Manifest() *Manifest { return v.m }

// DataStart is the payload offset of the first data blob.
func (v *Verified) DataStart() int64 { return v.dataStart }

// copyBuf is the streaming buffer size.
const copyBuf = 256 << 10

// Receive reads a payload from r and writes every byte of it to w (a
// temporary file on the target partition), in one pass: header and
// manifest are checked and bounded first, then the data blobs are copied
// while the signed range and each blob are hashed, then the signature
// blob is read, the end of r is required right after it, and the
// signatures are verified with keys. Nothing is decompressed. On success
// w holds the exact payload; on error the caller discards w.
func Receive(r io.Reader, w io.Writer, keys []*rsa.PublicKey, lim Limits) (*Verified, error) {
	lim = lim.withDefaults()
	signed := signedHash()
	sw := io.MultiWriter(w, signed)
	h, hb, err := ReadHeader(r, lim)
	if err != nil {
		return nil, err
	}
	mb := make([]byte, h.ManifestSize)
	if _, err := io.ReadFull(r, mb); err != nil {
		return nil, &Error{Rule: fmt.Sprintf("manifest: truncated (%d bytes declared)", h.ManifestSize), Err: err}
	}
	m, err := ParseManifest(mb, lim)
	if err != nil {
		return nil, err
	}
	if _, err := sw.Write(hb); err != nil {
		return nil, err
	}
	if _, err := sw.Write(mb); err != nil {
		return nil, err
	}
	v := &Verified{m: m, dataStart: HeaderSize + int64(h.ManifestSize), opBad: -1}
	if err := receiveBlobs(r, sw, v); err != nil {
		return nil, err
	}
	sb := make([]byte, m.SigSize)
	if _, err := io.ReadFull(r, sb); err != nil {
		return nil, &Error{Rule: fmt.Sprintf("signature blob: truncated (%d bytes declared)", m.SigSize), Err: err}
	}
	if _, err := w.Write(sb); err != nil {
		return nil, err
	}
	if err := requireEOF(r); err != nil {
		return nil, err
	}
	sigs, err := ParseSignatures(sb)
	if err != nil {
		return nil, err
	}
	if err := verifySignatures(sigs, signed.Sum(nil), keys); err != nil {
		return nil, err
	}
	if v.opBad >= 0 {
		return nil, errf("operation %d: data does not match its data_sha256_hash", v.opBad)
	}
	return v, nil
}

// receiveBlobs copies the data blobs of v's operations from r to w,
// hashing each one; the manifest bounds every length.
func receiveBlobs(r io.Reader, w io.Writer, v *Verified) error {
	buf := make([]byte, copyBuf)
	var oh hash.Hash = sha256.New()
	for i, op := range v.m.Ops {
		oh.Reset()
		n, err := io.CopyBuffer(io.MultiWriter(w, oh), io.LimitReader(r, int64(op.DataLength)), buf)
		if err != nil {
			return err
		}
		if uint64(n) != op.DataLength {
			return errf("operation %d: payload truncated (%d of %d data bytes)", i, n, op.DataLength)
		}
		if v.opBad < 0 && !bytes.Equal(oh.Sum(nil), op.Hash) {
			v.opBad = i
		}
	}
	return nil
}

// requireEOF refuses a payload with bytes after the signature blob
// (update_engine also insists on the exact length).
func requireEOF(r io.Reader) error {
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n > 0 {
			return errf("trailing bytes after the signature blob")
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

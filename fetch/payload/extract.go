package payload

import (
	"bytes"
	"compress/bzip2"
	"crypto/sha256"
	"fmt"
	"io"
)

// Extract writes the image of the verified payload v, whose bytes are in
// src (the file Receive wrote), to w in one sequential pass: each
// REPLACE blob as is, each REPLACE_BZ blob decompressed, every
// operation's output bounded by its extent (cut at the image end), then
// the image size and SHA-256 compared with the signed manifest. On error
// the caller discards w.
func Extract(v *Verified, src io.ReaderAt, w io.Writer) error {
	m := v.m
	img := sha256.New()
	out := io.MultiWriter(w, img)
	buf := make([]byte, copyBuf)
	var total uint64
	for i := range m.Ops {
		op := &m.Ops[i]
		want := op.OutLen(m.BlockSize, m.NewSize)
		var in io.Reader = io.NewSectionReader(src, v.dataStart+int64(op.DataOffset), int64(op.DataLength))
		if op.Type == OpReplaceBZ {
			in = bzip2.NewReader(in)
		}
		n, err := io.CopyBuffer(out, io.LimitReader(in, int64(want)+1), buf)
		if err != nil {
			return &Error{Rule: fmt.Sprintf("operation %d: cannot extract", i), Err: err}
		}
		if uint64(n) != want {
			return errf("operation %d: extracted %d bytes, its extent takes %d", i, n, want)
		}
		total += uint64(n)
	}
	if total != m.NewSize {
		return errf("image: %d bytes extracted, manifest says %d", total, m.NewSize)
	}
	if !bytes.Equal(img.Sum(nil), m.NewHash) {
		return errf("image: SHA-256 does not match new_partition_info.hash")
	}
	return nil
}

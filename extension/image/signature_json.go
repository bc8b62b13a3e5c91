package image

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

const (
	// maxSigPartition bounds what is read of a *-verity-sig partition
	// (systemd-repart writes a few KiB, padded to 4 KiB; systemd refuses
	// signature partitions above 4 MiB).
	maxSigPartition = 4 << 20
	// MaxSigFile bounds a .roothash.p7s sidecar.
	MaxSigFile = 1 << 20
	// MaxRootHashText bounds a .roothash sidecar or xattr (hex of at most
	// 64 bytes plus white space).
	MaxRootHashText = 4096
)

// SignatureError is a signature partition or sidecar that breaks a rule.
type SignatureError struct{ Rule string }

func (e *SignatureError) Error() string { return "root hash signature: " + e.Rule }

// ParseSignatureJSON parses the content of a *-verity-sig partition: one
// JSON object {"rootHash": hex, "certificateFingerprint": hex (optional),
// "signature": base64 DER PKCS#7}, followed by NUL padding only. At most
// size bytes are read (size is the partition size; it must not exceed
// 4 MiB).
func ParseSignatureJSON(r io.Reader, size int64) (*Signature, error) {
	if size <= 0 || size > maxSigPartition {
		return nil, &SignatureError{Rule: fmt.Sprintf("signature partition size %d is outside 1..%d", size, maxSigPartition)}
	}
	buf := make([]byte, size)
	n, err := io.ReadFull(r, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil, &SignatureError{Rule: fmt.Sprintf("cannot read signature partition: %v", err)}
	}
	buf = buf[:n]
	end := bytes.IndexByte(buf, 0)
	if end < 0 {
		end = len(buf)
	}
	for _, c := range buf[end:] {
		if c != 0 {
			return nil, &SignatureError{Rule: "bytes after the JSON object's NUL padding"}
		}
	}
	var j struct {
		RootHash               *string `json:"rootHash"`
		CertificateFingerprint *string `json:"certificateFingerprint"`
		Signature              *string `json:"signature"`
	}
	dec := json.NewDecoder(bytes.NewReader(buf[:end]))
	if err := dec.Decode(&j); err != nil {
		return nil, &SignatureError{Rule: fmt.Sprintf("invalid JSON: %v", err)}
	}
	if dec.More() {
		return nil, &SignatureError{Rule: "more than one JSON value"}
	}
	if j.RootHash == nil || j.Signature == nil {
		return nil, &SignatureError{Rule: "JSON lacks \"rootHash\" or \"signature\""}
	}
	s := &Signature{}
	if s.RootHash, err = ParseRootHash(*j.RootHash); err != nil {
		return nil, &SignatureError{Rule: fmt.Sprintf("\"rootHash\": %v", err)}
	}
	if j.CertificateFingerprint != nil {
		fp, err := hex.DecodeString(*j.CertificateFingerprint)
		if err != nil || len(fp) != 32 {
			return nil, &SignatureError{Rule: "\"certificateFingerprint\" is not a hex SHA-256"}
		}
		s.CertFingerprint = fp
	}
	if s.PKCS7, err = base64.StdEncoding.DecodeString(*j.Signature); err != nil || len(s.PKCS7) == 0 {
		return nil, &SignatureError{Rule: "\"signature\" is not non-empty base64"}
	}
	return s, nil
}

// ReadSignatureFile reads a .roothash.p7s sidecar (DER PKCS#7), at most
// 1 MiB.
func ReadSignatureFile(r io.Reader) (*Signature, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSigFile+1))
	if err != nil {
		return nil, &SignatureError{Rule: fmt.Sprintf("cannot read .roothash.p7s: %v", err)}
	}
	if len(b) == 0 || len(b) > MaxSigFile {
		return nil, &SignatureError{Rule: fmt.Sprintf(".roothash.p7s size %d is outside 1..%d", len(b), MaxSigFile)}
	}
	return &Signature{PKCS7: b}, nil
}

// ParseRootHash decodes a hex root hash (surrounding white space
// allowed) of 16..64 bytes.
func ParseRootHash(s string) ([]byte, error) {
	s = string(bytes.TrimSpace([]byte(s)))
	if len(s) > 2*64 {
		return nil, fmt.Errorf("root hash of %d hex digits is longer than 128", len(s))
	}
	h, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("root hash is not hex: %v", err)
	}
	if len(h) < 16 {
		return nil, fmt.Errorf("root hash of %d bytes is shorter than 16", len(h))
	}
	return h, nil
}

// ReadRootHash reads a .roothash sidecar (hex, at most 4 KiB).
func ReadRootHash(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxRootHashText+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRootHashText {
		return nil, fmt.Errorf(".roothash is larger than %d bytes", MaxRootHashText)
	}
	return ParseRootHash(string(b))
}

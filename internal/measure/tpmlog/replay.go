package tpmlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/internal/cescape"
)

const (
	// VerityNvIndex is the NV index of the "verity" NvPCR (systemd's
	// TPM2_NVPCR_BASE 0x01D10200 + 2).
	VerityNvIndex = 0x01D10202
	// VerityName is the NvPCR's name, the records' content.nvIndexName.
	VerityName = "verity"
	// VerityEventType is the records' content.eventType (the Varlink enum
	// dm_verity, dashified).
	VerityEventType = "dm-verity"
	// V262Start is the value of an NvPCR freshly initialised by systemd
	// 262: its first extend is 32 zero bytes, so SHA256(0^32 || 0^32).
	V262Start = "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"

	// maxStringLen is where systemd cuts a record's string (then "..."
	// follows): a cut word cannot be checked against its digest.
	maxStringLen = 1024
)

// Verity returns the records of the verity NvPCR, in log order.
func Verity(recs []Record) []Record {
	var out []Record
	for _, r := range recs {
		if r.Content.NvIndexName == VerityName {
			out = append(out, r)
		}
	}
	return out
}

// Word returns the measured bytes of r: its content string with systemd's
// C escaping undone.
func (r Record) Word() (string, error) {
	w, err := cescape.Unescape(r.Content.String)
	if err != nil {
		return "", fmt.Errorf("record %d: content.string: %w", r.Seq, err)
	}
	return w, nil
}

// SHA256 returns the record's single sha256 digest, checked to be 32
// bytes of lowercase hex.
func (r Record) SHA256() ([]byte, error) {
	if len(r.Digests) != 1 || r.Digests[0].HashAlg != "sha256" {
		return nil, fmt.Errorf("record %d: digests: want exactly one sha256 digest, have %d", r.Seq, len(r.Digests))
	}
	d := r.Digests[0].Digest
	b, err := hex.DecodeString(d)
	if err != nil || len(b) != sha256.Size || strings.ToLower(d) != d {
		return nil, fmt.Errorf("record %d: digest %q is not 64 lowercase hex digits", r.Seq, d)
	}
	return b, nil
}

// CheckVerity checks one verity record against the rules systemd writes
// it by: nv_index 0x01D10202, content_type "systemd", event type
// "dm-verity", a word "verity:NAME:ROOTHASH:SIGNERS", a 32-hex-digit boot
// ID, a timestamp, and a sha256 digest equal to SHA256(word).
func CheckVerity(r Record) error {
	if r.NvIndex == nil || *r.NvIndex != VerityNvIndex {
		return fmt.Errorf("record %d: nv_index is not 0x%08x", r.Seq, VerityNvIndex)
	}
	if r.ContentType != "systemd" {
		return fmt.Errorf("record %d: content_type %q, want \"systemd\"", r.Seq, r.ContentType)
	}
	if r.Content.NvIndexName != VerityName || r.Content.EventType != VerityEventType {
		return fmt.Errorf("record %d: nvIndexName %q eventType %q, want %q %q", r.Seq, r.Content.NvIndexName, r.Content.EventType, VerityName, VerityEventType)
	}
	if id, err := hex.DecodeString(r.Content.BootID); err != nil || len(id) != 16 {
		return fmt.Errorf("record %d: bootId %q is not 32 hex digits", r.Seq, r.Content.BootID)
	}
	if r.Content.Timestamp == 0 {
		return fmt.Errorf("record %d: no timestamp", r.Seq)
	}
	d, err := r.SHA256()
	if err != nil {
		return err
	}
	w, err := r.Word()
	if err != nil {
		return err
	}
	if _, err := SplitWord(w); err != nil {
		return fmt.Errorf("record %d: %w", r.Seq, err)
	}
	if len(r.Content.String) > maxStringLen && strings.HasSuffix(r.Content.String, "...") {
		return fmt.Errorf("record %d: content.string is cut at %d bytes; its digest cannot be checked", r.Seq, maxStringLen)
	}
	if sum := sha256.Sum256([]byte(w)); !bytes.Equal(sum[:], d) {
		return fmt.Errorf("record %d: digest %x is not SHA256 of the word (%x)", r.Seq, d, sum)
	}
	return nil
}

// Replay computes the value of the verity NvPCR from its records: from
// start (hex), V = SHA256(V || digest) for each record in order, after
// CheckVerity accepted it. It returns the value as lowercase hex.
func Replay(start string, verity []Record) (string, error) {
	v, err := hex.DecodeString(start)
	if err != nil || len(v) != sha256.Size {
		return "", fmt.Errorf("replay start %q is not 64 hex digits", start)
	}
	for _, r := range verity {
		if err := CheckVerity(r); err != nil {
			return "", err
		}
		d, _ := r.SHA256()
		h := sha256.New()
		h.Write(v)
		h.Write(d)
		v = h.Sum(nil)
	}
	return hex.EncodeToString(v), nil
}

// Word is a verity word split into its four fields.
type Word struct {
	Name     string // the dm name as measured (xescaped)
	RootHash string // lowercase hex
	Signers  string // "" or serial/issuer pairs joined by ','
}

// SplitWord splits "verity:NAME:ROOTHASH:SIGNERS". NAME cannot hold ':'
// (systemd escapes it), nor can the hex root hash; SIGNERS is the rest.
func SplitWord(w string) (Word, error) {
	f := strings.SplitN(w, ":", 4)
	if len(f) != 4 || f[0] != "verity" {
		return Word{}, fmt.Errorf("word %q is not verity:NAME:ROOTHASH:SIGNERS", w)
	}
	if f[1] == "" {
		return Word{}, fmt.Errorf("word %q has an empty device name", w)
	}
	if b, err := hex.DecodeString(f[2]); err != nil || len(b) == 0 || strings.ToLower(f[2]) != f[2] {
		return Word{}, fmt.Errorf("word %q: root hash is not lowercase hex", w)
	}
	return Word{Name: f[1], RootHash: f[2], Signers: f[3]}, nil
}

// Package tpmlog reads systemd's userspace TPM measurement log,
// /run/log/systemd/tpm2-measure.log, replays an NvPCR from it and compares
// the dm-verity records of two boots. The QEMU measured-boot tests use it
// to check, on the host, what systemd wrote in the guest: the log is
// guest output, so it is read as hostile input (bounded, every field
// checked).
//
// The file is RFC 7464 JSON text sequences: each record is 0x1E, one
// compact JSON object and "\n", appended by systemd-pcrextend after the
// TPM command succeeded (docs/measure.md).
package tpmlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

const (
	// MaxRecordSize bounds one record. systemd cuts the measured string
	// at 1024 bytes, and C-escaping at most quadruples it; the rest of a
	// record is well under 1 KiB.
	MaxRecordSize = 16 << 10
	// MaxRecords bounds the records read from one log. A boot writes a
	// few dozen (PCR phases, NvPCR initialisation, one per verity
	// activation).
	MaxRecords = 4096

	recordSeparator = 0x1e
)

// Digest is one entry of a record's "digests".
type Digest struct {
	HashAlg string `json:"hashAlg"`
	Digest  string `json:"digest"`
}

// Content is a record's "content" object as systemd writes it for
// measurements it makes itself (content_type "systemd").
type Content struct {
	NvIndexName string `json:"nvIndexName,omitempty"`
	String      string `json:"string"`
	BootID      string `json:"bootId"`
	Timestamp   uint64 `json:"timestamp"`
	EventType   string `json:"eventType,omitempty"`
}

// Record is one log record: an NvPCR record has NvIndex, a PCR record PCR.
type Record struct {
	NvIndex     *uint32  `json:"nv_index,omitempty"`
	PCR         *uint32  `json:"pcr,omitempty"`
	Digests     []Digest `json:"digests"`
	ContentType string   `json:"content_type"`
	Content     Content  `json:"content"`
	// Seq is the record's position in the log, from 0.
	Seq int `json:"-"`
}

// Read parses every record of a tpm2-measure.log. A record that is not
// 0x1E, a JSON object and "\n", a record over MaxRecordSize, more than
// MaxRecords records, or trailing data is an error naming the record.
// name is the file's name for the errors.
func Read(r io.Reader, name string) ([]Record, error) {
	br := bufio.NewReaderSize(r, 4096)
	var out []Record
	for seq := 0; ; seq++ {
		c, err := br.ReadByte()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: record %d: %w", name, seq, err)
		}
		if c != recordSeparator {
			return nil, fmt.Errorf("%s: record %d: starts with 0x%02x, not the RFC 7464 record separator 0x1e", name, seq, c)
		}
		if seq >= MaxRecords {
			return nil, fmt.Errorf("%s: more than %d records", name, MaxRecords)
		}
		body, err := readBounded(br)
		if err != nil {
			return nil, fmt.Errorf("%s: record %d: %w", name, seq, err)
		}
		rec, err := parseRecord(body)
		if err != nil {
			return nil, fmt.Errorf("%s: record %d: %w", name, seq, err)
		}
		rec.Seq = seq
		out = append(out, rec)
	}
}

// readBounded returns the bytes up to the record's closing "\n" (not
// included), at most MaxRecordSize of them.
func readBounded(br *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(body)+len(chunk) > MaxRecordSize+1 {
			return nil, fmt.Errorf("longer than %d bytes", MaxRecordSize)
		}
		body = append(body, chunk...)
		switch {
		case err == nil:
			return body[:len(body)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			return nil, errors.New("not terminated by a newline (an aborted write?)")
		default:
			return nil, err
		}
	}
}

// parseRecord decodes one record's JSON: exactly one object, no unknown
// top-level shape (unknown keys are allowed, as systemd may add some).
func parseRecord(body []byte) (Record, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&rec); err != nil {
		return Record{}, fmt.Errorf("not a JSON record: %w", err)
	}
	if dec.More() {
		return Record{}, errors.New("more than one JSON value in one record")
	}
	if (rec.NvIndex == nil) == (rec.PCR == nil) {
		return Record{}, errors.New("needs exactly one of nv_index and pcr")
	}
	return rec, nil
}

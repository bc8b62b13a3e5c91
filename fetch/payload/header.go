package payload

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Magic and Version are the only header values this package accepts.
const (
	Magic      = "CrAU"
	Version    = 1
	HeaderSize = 20
)

// Header is the fixed start of a payload.
type Header struct {
	ManifestSize uint64
}

// ReadHeader reads and checks the 20-byte header from r and bounds the
// manifest size by lim (defaults applied for zero fields).
func ReadHeader(r io.Reader, lim Limits) (Header, []byte, error) {
	lim = lim.withDefaults()
	var b [HeaderSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Header{}, nil, &Error{Rule: "header: payload shorter than 20 bytes", Err: err}
	}
	if string(b[:4]) != Magic {
		return Header{}, nil, &Error{Rule: fmt.Sprintf("header: magic %q is not %q", b[:4], Magic)}
	}
	if v := binary.BigEndian.Uint64(b[4:12]); v != Version {
		return Header{}, nil, &Error{Rule: fmt.Sprintf("header: version %d is not %d", v, Version)}
	}
	h := Header{ManifestSize: binary.BigEndian.Uint64(b[12:20])}
	if h.ManifestSize == 0 || h.ManifestSize > lim.MaxManifest {
		return Header{}, nil, &Error{Rule: fmt.Sprintf("header: manifest size %d outside 1..%d", h.ManifestSize, lim.MaxManifest)}
	}
	return h, b[:], nil
}

// Error is a payload that breaks a rule; Rule says which.
type Error struct {
	Rule string
	Err  error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "payload: " + e.Rule + ": " + e.Err.Error()
	}
	return "payload: " + e.Rule
}

func (e *Error) Unwrap() error { return e.Err }

// errf builds an *Error.
func errf(format string, a ...any) error { return &Error{Rule: fmt.Sprintf(format, a...)} }

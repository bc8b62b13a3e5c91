package varlink

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	wire "github.com/ext-setup-root/ext-setup-root/internal/varlink"
	"io"
)

// MaxMessage bounds one message, request or reply, including its NUL:
// sd-varlink's own limit (VARLINK_BUFFER_MAX, 16 MiB). A longer message
// ends the connection; nothing is allocated beyond it.
const MaxMessage = 16 << 20

// ErrProtocol is a message that breaks the Varlink protocol (not JSON, not
// an object, an unknown field, a field of the wrong type): sd-varlink
// closes the connection without a reply, and so do we.
var ErrProtocol = errors.New("varlink protocol error")

// Call is one method call as read from the wire.
type Call struct {
	Method string
	// Parameters is the raw "parameters" object, nil when absent or null.
	Parameters json.RawMessage
	More       bool
	Oneway     bool
	// Upgrade is accepted and ignored (no method here upgrades; sd-varlink
	// answers such a call normally too).
	Upgrade bool
}

// readMessage reads one NUL-terminated message of at most max bytes (NUL
// included) with the module's one framing reader and returns it without
// the NUL. io.EOF means the peer closed the connection between two
// messages; an overlong or cut message is a protocol error.
func readMessage(r *bufio.Reader, max int) ([]byte, error) {
	msg, err := wire.ReadMessage(r, max-1)
	switch {
	case errors.Is(err, wire.ErrTooLong):
		return nil, fmt.Errorf("%w: message longer than %d bytes", ErrProtocol, max)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%w: connection closed inside a message", ErrProtocol)
	}
	return msg, err
}

// ParseCall decodes one message into a Call. Only the fields of a Varlink
// call are allowed, each with its type; anything else is ErrProtocol.
func ParseCall(msg []byte) (*Call, error) {
	fields, err := objectFields(msg)
	if err != nil {
		return nil, err
	}
	c := &Call{}
	for _, f := range fields {
		var err error
		switch f.name {
		case "method":
			err = json.Unmarshal(f.raw, &c.Method)
			if err == nil && f.isNull() {
				err = errors.New("null method")
			}
		case "parameters":
			switch {
			case f.isNull():
			case f.raw[0] == '{':
				c.Parameters = f.raw
			default:
				err = errors.New("parameters are not an object")
			}
		case "more":
			c.More, err = f.boolean()
		case "oneway":
			c.Oneway, err = f.boolean()
		case "upgrade":
			c.Upgrade, err = f.boolean()
		default:
			err = errors.New("unknown field")
		}
		if err != nil {
			return nil, fmt.Errorf("%w: field %q: %v", ErrProtocol, f.name, err)
		}
	}
	if c.Method == "" {
		return nil, fmt.Errorf("%w: no method", ErrProtocol)
	}
	if c.More && c.Oneway {
		return nil, fmt.Errorf("%w: both more and oneway set", ErrProtocol)
	}
	return c, nil
}

// field is one member of a JSON object, its value still raw.
type field struct {
	name string
	raw  json.RawMessage
}

func (f field) isNull() bool { return bytes.Equal(f.raw, []byte("null")) }

// boolean decodes a JSON true or false; null and every other type are
// errors (sd-json's boolean dispatch).
func (f field) boolean() (bool, error) {
	switch string(f.raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// objectFields splits a JSON object into its members, in order, keeping
// duplicates (the caller decides). Anything but one object is ErrProtocol.
func objectFields(msg []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(msg))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: not a JSON object", ErrProtocol)
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: member %q: %v", ErrProtocol, name, err)
		}
		out = append(out, field{name: name, raw: raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", ErrProtocol)
	}
	return out, nil
}

// reply is one message the server sends.
// Its members come in sd-varlink's order, so replies are byte for byte
// what systemd-sysext sends.
type reply struct {
	Error      string `json:"error,omitempty"`
	Parameters any    `json:"parameters,omitempty"`
	Continues  bool   `json:"continues,omitempty"`
}

// encodeReply renders r with its terminating NUL.
func encodeReply(r reply) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(b)+1 > MaxMessage {
		return nil, fmt.Errorf("reply of %d bytes exceeds %d", len(b)+1, MaxMessage)
	}
	return append(b, 0), nil
}

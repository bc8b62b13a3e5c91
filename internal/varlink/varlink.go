// Package varlink is a minimal Varlink client: one method call over a
// unix socket and its single reply, enough to ask systemd's services
// (io.systemd.PCRExtend) for something. A Varlink message is a JSON object
// followed by a NUL byte; a call is {"method":M,"parameters":P}, a reply
// {"parameters":P} or {"error":NAME,"parameters":P}. No "more", "oneway"
// or upgrade: the calls we make have one reply.
package varlink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// MaxMessage bounds a reply: the server is another process, and a reply
// that never ends must not make us allocate without limit. sd-varlink
// refuses messages over 16 MiB; our calls' replies are a few bytes.
const MaxMessage = 1 << 20

// Error is a Varlink error reply, such as
// io.systemd.PCRExtend.NoSuchNvPCR or org.varlink.service.MethodNotFound.
type Error struct {
	Name       string
	Parameters json.RawMessage
}

func (e *Error) Error() string { return "varlink error " + e.Name }

// Reply is a successful reply's parameters (JSON, possibly empty).
type Reply struct {
	Parameters json.RawMessage
}

type call struct {
	Method     string `json:"method"`
	Parameters any    `json:"parameters,omitempty"`
}

// Call connects to the unix socket at path, calls method with params
// (marshalled as a JSON object) and returns the reply. A Varlink error
// reply is returned as *Error. The whole exchange ends at ctx's deadline.
// Errors name the socket and the method.
func Call(ctx context.Context, path, method string, params any) (*Reply, error) {
	msg, err := json.Marshal(call{Method: method, Parameters: params})
	if err != nil {
		return nil, fmt.Errorf("varlink %s: %w", method, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("varlink %s: connect %s: %w", method, path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// A cancelled context ends the exchange too (the deadline above
	// covers the common case without a goroutine).
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(append(msg, 0)); err != nil {
		return nil, fmt.Errorf("varlink %s: write to %s: %w", method, path, err)
	}
	b, err := ReadMessage(bufio.NewReader(c), MaxMessage)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // closed without a reply
	}
	if err != nil {
		return nil, fmt.Errorf("varlink %s: reply from %s: %w", method, path, err)
	}
	r, err := ParseReply(b)
	if err != nil {
		return nil, fmt.Errorf("varlink %s: reply from %s: %w", method, path, err)
	}
	return r, nil
}

// ErrTooLong is returned by ReadMessage for a message over its bound.
var ErrTooLong = errors.New("varlink message too long")

// ReadMessage reads one NUL-terminated message of at most max bytes
// (without the NUL); the one framing reader of the module (the client here
// and the server in package varlink). EOF before any byte is io.EOF (the
// peer closed between messages), EOF inside a message io.ErrUnexpectedEOF.
func ReadMessage(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice(0)
		if len(buf)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w (over %d bytes)", ErrTooLong, max)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf[:len(buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// ParseReply decodes one reply message: a JSON object with optional
// "parameters" (an object) and "error" (a string); "continues" is refused
// (we never ask for more). Unknown keys are ignored, as the protocol
// allows.
func ParseReply(b []byte) (*Reply, error) {
	var m struct {
		Parameters json.RawMessage `json:"parameters"`
		Error      *string         `json:"error"`
		Continues  bool            `json:"continues"`
	}
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	if p := bytes.TrimSpace(m.Parameters); len(p) != 0 && !bytes.Equal(p, []byte("null")) && p[0] != '{' {
		return nil, errors.New(`"parameters" is not an object`)
	}
	if m.Error != nil {
		if *m.Error == "" {
			return nil, errors.New(`empty "error"`)
		}
		return nil, &Error{Name: *m.Error, Parameters: m.Parameters}
	}
	if m.Continues {
		return nil, errors.New(`"continues" reply to a call that did not ask for more`)
	}
	return &Reply{Parameters: m.Parameters}, nil
}

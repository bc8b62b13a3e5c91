package varlink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serve listens on a unix socket in a temp dir and hands each accepted
// connection's first message to handle, which writes the reply bytes.
func serve(t *testing.T, handle func(msg []byte, c net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				msg, err := ReadMessage(bufio.NewReader(c), MaxMessage)
				if err != nil {
					return
				}
				handle(msg, c)
			}()
		}
	}()
	return path
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

func TestCallWireFormat(t *testing.T) {
	got := make(chan []byte, 1)
	path := serve(t, func(msg []byte, c net.Conn) {
		got <- msg
		c.Write([]byte(`{"parameters":{"x":1}}` + "\x00"))
	})
	r, err := Call(ctx(t, 5*time.Second), path, "io.example.M", map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Parameters) != `{"x":1}` {
		t.Errorf("parameters %s", r.Parameters)
	}
	if m := <-got; string(m) != `{"method":"io.example.M","parameters":{"a":"b"}}` {
		t.Errorf("sent %q", m)
	}
}

func TestCallErrorReply(t *testing.T) {
	path := serve(t, func(_ []byte, c net.Conn) {
		c.Write([]byte(`{"error":"io.systemd.PCRExtend.NoSuchNvPCR","parameters":{}}` + "\x00"))
	})
	_, err := Call(ctx(t, 5*time.Second), path, "io.systemd.PCRExtend.Extend", nil)
	var ve *Error
	if !errors.As(err, &ve) || ve.Name != "io.systemd.PCRExtend.NoSuchNvPCR" {
		t.Fatalf("err %v, want *Error NoSuchNvPCR", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the socket: %v", err)
	}
}

func TestCallFailures(t *testing.T) {
	if _, err := Call(ctx(t, time.Second), filepath.Join(t.TempDir(), "none"), "m", nil); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing socket: %v, want ENOENT", err)
	}
	closed := serve(t, func(_ []byte, c net.Conn) { c.Write([]byte(`{"parameters":{}}`)) })
	if _, err := Call(ctx(t, 5*time.Second), closed, "m", nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reply without NUL: %v, want unexpected EOF", err)
	}
	huge := serve(t, func(_ []byte, c net.Conn) { c.Write(bytes.Repeat([]byte("x"), MaxMessage+10)) })
	if _, err := Call(ctx(t, 5*time.Second), huge, "m", nil); !errors.Is(err, ErrTooLong) {
		t.Errorf("endless reply: %v, want ErrTooLong", err)
	}
	hang := serve(t, func(_ []byte, c net.Conn) { time.Sleep(3 * time.Second) })
	start := time.Now()
	if _, err := Call(ctx(t, 200*time.Millisecond), hang, "m", nil); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
		t.Errorf("hanging server: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("hanging server held the call %v", d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestParseReply(t *testing.T) {
	for _, c := range []struct{ in, err string }{
		{`{}`, ""},
		{`{"parameters":{}}`, ""},
		{` {"parameters":null,"future":[1]} `, ""},
		{`{"error":"a.B"}`, "varlink error a.B"},
		{`{"error":""}`, "empty"},
		{`{"continues":true,"parameters":{}}`, "continues"},
		{`{"parameters":[]}`, "not an object"},
		{`null`, "not a JSON object"},
		{`[]`, "not a JSON object"},
		{``, "not a JSON object"},
		{`{} {}`, "trailing"},
		{`{"error":1}`, "not a JSON object"},
	} {
		_, err := ParseReply([]byte(c.in))
		if (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: %v, want %q", c.in, err, c.err)
		}
	}
}

func TestReadMessageBound(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("abcdef\x00ghi\x00"), 16)
	if m, err := ReadMessage(r, 6); err != nil || string(m) != "abcdef" {
		t.Errorf("%q %v", m, err)
	}
	if m, err := ReadMessage(r, 2); !errors.Is(err, ErrTooLong) {
		t.Errorf("%q %v, want ErrTooLong", m, err)
	}
	// A message longer than the bufio buffer is read across refills.
	long := strings.Repeat("y", 100)
	if m, err := ReadMessage(bufio.NewReaderSize(strings.NewReader(long+"\x00"), 16), 100); err != nil || string(m) != long {
		t.Errorf("long message: %d bytes, %v", len(m), err)
	}
}

// FuzzReply feeds arbitrary server output to the reply reader and parser:
// no panic, the bound holds, and an accepted reply's parameters are JSON.
func FuzzReply(f *testing.F) {
	for _, s := range []string{`{"parameters":{}}` + "\x00", `{"error":"x.Y","parameters":{"a":1}}` + "\x00", "\x00", `{"parameters":` + "\x00", "{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := ReadMessage(bufio.NewReaderSize(bytes.NewReader(b), 16), 64)
		if err != nil {
			return
		}
		if len(msg) > 64 || bytes.IndexByte(msg, 0) >= 0 {
			t.Fatalf("message of %d bytes with NUL: %q", len(msg), msg)
		}
		r, err := ParseReply(msg)
		if err == nil && len(r.Parameters) != 0 && !json.Valid(r.Parameters) {
			t.Fatalf("accepted invalid parameters %q", r.Parameters)
		}
	})
}

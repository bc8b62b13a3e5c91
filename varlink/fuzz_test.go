package varlink

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"testing"
)

// FuzzReadCall: any byte stream is split into bounded messages and each is
// either a Call or a protocol error, never a panic.
func FuzzReadCall(f *testing.F) {
	f.Add([]byte(`{"method":"io.systemd.sysext.List","more":true}` + "\x00"))
	f.Add([]byte(`{"method":"a","parameters":{"class":"confext","class":1}}` + "\x00{\x00"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		for i := 0; i < 64; i++ {
			msg, err := readMessage(r, 256)
			if err != nil {
				return
			}
			if len(msg) > 255 {
				t.Fatalf("message of %d bytes over the bound", len(msg))
			}
			if c, err := ParseCall(msg); err == nil && c.Method == "" {
				t.Fatalf("call without method accepted: %q", msg)
			}
		}
	})
}

// FuzzServe: a connection carrying arbitrary bytes is served by the real
// dispatch with a fake backend; every reply is one NUL-terminated JSON
// object.
func FuzzServe(f *testing.F) {
	f.Add([]byte(`{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext"}}` + "\x00"))
	f.Add([]byte(`{"method":"io.systemd.sysext.List","more":true}` + "\x00" + `{"method":"org.varlink.service.GetInfo"}` + "\x00"))
	f.Add([]byte(`{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate","parameters":{"resources":[1]}}` + "\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Server{Methods: SysextMethods(&fakeBackend{}), Info: Info{Interfaces: Interfaces()}}
		r := bufio.NewReader(bytes.NewReader(data))
		var out bytes.Buffer
		for i := 0; i < 64; i++ {
			msg, err := readMessage(r, 4096)
			if err != nil {
				break
			}
			c, err := ParseCall(msg)
			if err != nil {
				break
			}
			if err := s.dispatch(context.Background(), &out, c, root); err != nil {
				t.Fatalf("dispatch: %v", err)
			}
		}
		for _, rep := range strings.Split(strings.TrimSuffix(out.String(), "\x00"), "\x00") {
			if rep == "" {
				continue
			}
			if _, err := objectFields([]byte(rep)); err != nil {
				t.Fatalf("reply is not one JSON object: %q", rep)
			}
		}
	})
}

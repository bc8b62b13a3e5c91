package varlink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension"
)

// fakeBackend records the calls and answers with canned results.
type fakeBackend struct {
	calls  []string
	err    error
	images []extension.ImageDetails
}

func (f *fakeBackend) Merge(_ context.Context, c Class, o Options) error {
	f.calls = append(f.calls, "merge "+string(c)+" "+optString(o))
	return f.err
}

func (f *fakeBackend) Refresh(_ context.Context, c Class, o Options) error {
	f.calls = append(f.calls, "refresh "+string(c)+" "+optString(o))
	return f.err
}

func (f *fakeBackend) Unmerge(_ context.Context, c Class, noReload bool) error {
	f.calls = append(f.calls, "unmerge "+string(c)+map[bool]string{true: " noReload", false: ""}[noReload])
	return f.err
}

func (f *fakeBackend) List(_ context.Context, c Class) ([]extension.ImageDetails, error) {
	f.calls = append(f.calls, "list "+string(c))
	return f.images, f.err
}

func optString(o Options) string {
	s := []string{}
	if o.Force {
		s = append(s, "force")
	}
	if o.NoReload {
		s = append(s, "noReload")
	}
	if o.AlwaysRefresh {
		s = append(s, "always")
	}
	if o.Noexec != nil {
		s = append(s, map[bool]string{true: "noexec=1", false: "noexec=0"}[*o.Noexec])
	}
	return strings.Join(s, ",")
}

// call runs one raw request through dispatch as peer and returns the raw
// replies (NUL-separated, NULs included), or the error that would close
// the connection.
func call(t *testing.T, b Backend, peer Peer, msg string) (string, error) {
	t.Helper()
	s := &Server{Methods: SysextMethods(b), Info: Info{Vendor: "v", Product: "p", Version: "1", URL: "u", Interfaces: Interfaces()}}
	c, err := ParseCall([]byte(msg))
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	err = s.dispatch(context.Background(), &out, c, peer)
	return out.String(), err
}

var root = Peer{UID: 0, PID: 1, Known: true}

// TestDispatchLikeSystemd262: each request and the reply systemd 262's
// systemd-sysext sends for it (recorded with strace on the real binary;
// the same requests are replayed against both by the root test
// TestRawRepliesMatchSystemd262).
func TestDispatchLikeSystemd262(t *testing.T) {
	for _, tc := range []struct{ req, reply, calls string }{
		{`{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext","noReload":true}}`, "{}\x00", "merge confext noReload"},
		{`{"method":"io.systemd.sysext.Merge"}`, "{}\x00", "merge sysext "},
		{`{"method":"io.systemd.sysext.Merge","parameters":null}`, "{}\x00", "merge sysext "},
		{`{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext","bogus":1}}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"bogus"}}` + "\x00", ""},
		{`{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext","force":"x"}}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"force"}}` + "\x00", ""},
		{`{"method":"io.systemd.sysext.Merge","parameters":{"class":null}}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"class"}}` + "\x00", ""},
		{`{"method":"io.systemd.sysext.Merge","parameters":{"force":null}}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"force"}}` + "\x00", ""},
		{`{"method":"io.systemd.sysext.Unmerge","parameters":{"class":"confext","class":"sysext"}}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"class"}}` + "\x00", ""},
		{`{"method":"io.systemd.sysext.Refresh","parameters":{"class":"confext","alwaysRefresh":true,"noexec":false,"force":true}}`, "{}\x00", "refresh confext force,always,noexec=0"},
		{`{"method":"io.systemd.sysext.Unmerge","parameters":{"class":"confext","noReload":true,"allowInteractiveAuthentication":true}}`, "{}\x00", "unmerge confext noReload"},
		{`{"method":"io.systemd.sysext.Unmerge","parameters":{"class":"confext"},"upgrade":true}`, "{}\x00", "unmerge confext"},
		{`{"method":"io.systemd.sysext.Unmerge","parameters":{"class":"confext"},"oneway":true}`, "", "unmerge confext"},
		{`{"method":"io.systemd.sysext.List"}`, `{"error":"org.varlink.service.ExpectedMore"}` + "\x00", ""},
		{`{"method":"io.systemd.sysext.List","more":true}`, `{"error":"io.systemd.sysext.NoImagesFound"}` + "\x00", "list sysext"},
		{`{"method":"io.systemd.sysext.List","parameters":{"class":"bogus"},"more":true}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"class"}}` + "\x00", ""},
		{`{"method":"io.systemd.sysext.Foo"}`, `{"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.systemd.sysext.Foo"}}` + "\x00", ""},
		{`{"method":"io.systemd.Foo.Bar"}`, `{"error":"org.varlink.service.MethodNotFound","parameters":{"method":"io.systemd.Foo.Bar"}}` + "\x00", ""},
		{`{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate"}`, "{}\x00", "refresh sysext ;refresh confext "},
		{`{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate","parameters":{"component":"x","version":"1","resources":[{"transfer":"a","path":"/b"}]}}`, "{}\x00", "refresh sysext ;refresh confext "},
		{`{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate","parameters":{"foo":1}}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"foo"}}` + "\x00", ""},
		{`{"method":"org.varlink.service.GetInfo","parameters":{"x":1}}`, `{"error":"org.varlink.service.InvalidParameter","parameters":{"parameter":"x"}}` + "\x00", ""},
		{`{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"foo"}}`, `{"error":"org.varlink.service.InterfaceNotFound","parameters":{"interface":"foo"}}` + "\x00", ""},
	} {
		b := &fakeBackend{}
		got, err := call(t, b, root, tc.req)
		if err != nil {
			t.Errorf("%s: connection closed: %v", tc.req, err)
			continue
		}
		if got != tc.reply {
			t.Errorf("%s:\n got %q\nwant %q", tc.req, got, tc.reply)
		}
		if c := strings.Join(b.calls, ";"); c != tc.calls {
			t.Errorf("%s: backend calls %q, want %q", tc.req, c, tc.calls)
		}
	}
}

// TestProtocolErrorsClose: what sd-varlink answers by closing the
// connection without a reply.
func TestProtocolErrorsClose(t *testing.T) {
	for _, req := range []string{
		`{"method":"io.systemd.sysext.Unmerge","parameters":{"class":"confext"},"bogus":1}`,
		`{"method":"io.systemd.sysext.Unmerge","parameters":[]}`,
		`{"method":"io.systemd.sysext.List","more":true,"oneway":true}`,
		`not json`, `{"method":5}`, `{}`, `[]`, `{"method":"a"} {}`, `{"method":"a","more":1}`,
	} {
		if _, err := call(t, &fakeBackend{}, root, req); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", req, err)
		}
	}
}

func TestErrorsMapped(t *testing.T) {
	b := &fakeBackend{err: &extension.AlreadyMergedError{Hierarchy: "/etc"}}
	got, _ := call(t, b, root, `{"method":"io.systemd.sysext.Merge","parameters":{"class":"confext"}}`)
	if want := `{"error":"io.systemd.sysext.AlreadyMerged","parameters":{"hierarchy":"/etc"}}` + "\x00"; got != want {
		t.Errorf("already merged: %q, want %q", got, want)
	}
	b = &fakeBackend{err: &net.OpError{Op: "x", Err: unix.ENOPKG}}
	got, _ = call(t, b, root, `{"method":"io.systemd.sysext.Refresh"}`)
	if want := `{"error":"io.systemd.System","parameters":{"origin":"linux","errno":65,"errnoName":"ENOPKG"}}` + "\x00"; got != want {
		t.Errorf("errno: %q, want %q", got, want)
	}
	b = &fakeBackend{err: errors.New("no errno")}
	got, _ = call(t, b, root, `{"method":"io.systemd.sysext.Refresh"}`)
	if !strings.Contains(got, `"errnoName":"EIO"`) {
		t.Errorf("plain error: %q, want EIO", got)
	}
	// OnCompletedUpdate goes on after a failure and answers the first.
	b = &fakeBackend{err: unix.EROFS}
	got, _ = call(t, b, root, `{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate"}`)
	if !strings.Contains(got, "EROFS") || len(b.calls) != 2 {
		t.Errorf("notify: %q after %q, want EROFS after both refreshes", got, b.calls)
	}
}

// TestUnprivilegedPeer: only root changes merges; List is open to all.
func TestUnprivilegedPeer(t *testing.T) {
	user := Peer{UID: 1000, PID: 2, Known: true}
	for _, req := range []string{
		`{"method":"io.systemd.sysext.Merge"}`, `{"method":"io.systemd.sysext.Refresh","parameters":{"class":"confext"}}`,
		`{"method":"io.systemd.sysext.Unmerge"}`, `{"method":"io.systemd.SysUpdate.Notify.OnCompletedUpdate"}`,
	} {
		for _, p := range []Peer{user, {}} {
			b := &fakeBackend{}
			got, _ := call(t, b, p, req)
			if got != `{"error":"org.varlink.service.PermissionDenied"}`+"\x00" || len(b.calls) != 0 {
				t.Errorf("%s as %+v: %q, calls %q", req, p, got, b.calls)
			}
		}
	}
	b := &fakeBackend{images: []extension.ImageDetails{{ImageInfo: extension.ImageInfo{Name: "a", Type: "directory", Path: "/run/confexts/a"}, Crtime: 5}}}
	got, _ := call(t, b, user, `{"method":"io.systemd.sysext.List","parameters":{"class":"confext"},"more":true}`)
	if want := `{"parameters":{"Type":"directory","Class":"confext","Name":"a","Path":"/run/confexts/a","ReadOnly":false,"CreationTimestamp":5}}` + "\x00"; got != want {
		t.Errorf("list as user: %q, want %q", got, want)
	}
}

// TestListStreams: every image but the last is sent with continues; raw
// images carry their sizes.
func TestListStreams(t *testing.T) {
	b := &fakeBackend{images: []extension.ImageDetails{
		{ImageInfo: extension.ImageInfo{Name: "bar", Type: "directory", Path: "/run/confexts/bar"}, Crtime: 1},
		{ImageInfo: extension.ImageInfo{Name: "rawx", Type: "raw", Path: "/run/confexts/rawx.raw"}, Crtime: 2, Mtime: 3, Usage: 4096, Limit: 4000, ReadOnly: true},
	}}
	got, err := call(t, b, root, `{"method":"io.systemd.sysext.List","parameters":{"class":"confext"},"more":true}`)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"parameters":{"Type":"directory","Class":"confext","Name":"bar","Path":"/run/confexts/bar","ReadOnly":false,"CreationTimestamp":1},"continues":true}` + "\x00" +
		`{"parameters":{"Type":"raw","Class":"confext","Name":"rawx","Path":"/run/confexts/rawx.raw","ReadOnly":true,"CreationTimestamp":2,"ModificationTimestamp":3,"Usage":4096,"UsageExclusive":4096,"Limit":4000,"LimitExclusive":4000}}` + "\x00"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestServeConn runs a connection with several calls, a too long message
// and EOF inside a message.
func TestServeConn(t *testing.T) {
	a, bconn := net.Pipe()
	s := &Server{Methods: SysextMethods(&fakeBackend{}), Info: Info{Interfaces: Interfaces()}}
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), bconn) }()
	go func() {
		a.Write([]byte(`{"method":"io.systemd.sysext.List"}` + "\x00" + `{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"io.systemd.sysext"}}` + "\x00"))
	}()
	r := bufio.NewReader(a)
	first, _ := r.ReadString(0)
	second, _ := r.ReadString(0)
	a.Close()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if !strings.Contains(first, "ExpectedMore") || !strings.Contains(second, "method Refresh(") {
		t.Errorf("replies %q, %q", first, second)
	}
}

func TestReadMessageBounds(t *testing.T) {
	long := strings.Repeat("x", 100) + "\x00"
	if _, err := readMessage(bufio.NewReaderSize(strings.NewReader(long), 16), 50); !errors.Is(err, ErrProtocol) {
		t.Errorf("message over the bound: %v", err)
	}
	if m, err := readMessage(bufio.NewReaderSize(strings.NewReader(long), 16), 101); err != nil || len(m) != 100 {
		t.Errorf("message at the bound: %d bytes, %v", len(m), err)
	}
	if _, err := readMessage(bufio.NewReader(strings.NewReader("abc")), 50); !errors.Is(err, ErrProtocol) {
		t.Errorf("EOF inside a message: %v", err)
	}
}

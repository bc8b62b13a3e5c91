package varlink

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeListeningSocket: a listening socket (Accept=no) is served
// connection by connection until IdleTimeout passes without one; a
// connected one (Accept=yes) until its peer closes it.
func TestServeListeningSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	lf, err := l.File()
	l.SetUnlinkOnClose(false)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Methods: SysextMethods(&fakeBackend{}), Info: Info{Product: "p", Interfaces: Interfaces()}, IdleTimeout: 300 * time.Millisecond}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Serve(context.Background(), []*os.File{lf, b}) }()
	for _, c := range []net.Conn{dial(t, p), a} {
		c.Write([]byte(`{"method":"org.varlink.service.GetInfo"}` + "\x00"))
		rep, err := bufio.NewReader(c).ReadString(0)
		if err != nil || !strings.Contains(rep, `"io.systemd.sysext"`) {
			t.Errorf("GetInfo: %q, %v", rep, err)
		}
		c.Close()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("Serve returned after %v, before the idle timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the idle timeout")
	}
	if err := s.Serve(context.Background(), nil); !errors.Is(err, ErrNotActivated) {
		t.Errorf("Serve without descriptors: %v", err)
	}
}

func dial(t *testing.T, p string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// socketPair returns a connected pair: a net.Conn and the other end as
// the *os.File a service manager would pass.
func socketPair() (net.Conn, *os.File, error) {
	fds, err := unixSocketpair()
	if err != nil {
		return nil, nil, err
	}
	fa := os.NewFile(uintptr(fds[0]), "a")
	defer fa.Close()
	c, err := net.FileConn(fa)
	if err != nil {
		return nil, nil, err
	}
	return c, os.NewFile(uintptr(fds[1]), "b"), nil
}

package varlink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// ErrNotActivated is Serve without a descriptor from the service manager.
var ErrNotActivated = errors.New("no socket passed by the service manager (LISTEN_FDS); this verb is started by systemd-sysext.socket and systemd-sysupdate-notify-sysext.socket")

// Serve serves the descriptors a socket unit passed (go-systemd's
// activation.Files): a connected socket (Accept=yes, what systemd 262's
// sysext sockets use) is served until the peer closes it; a listening one
// (Accept=no) accepts connections until IdleTimeout passes without one.
// The files are closed.
func (s *Server) Serve(ctx context.Context, files []*os.File) error {
	if len(files) == 0 {
		return ErrNotActivated
	}
	var wg sync.WaitGroup
	errs := make([]error, len(files))
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.serveFile(ctx, f)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) serveFile(ctx context.Context, f *os.File) error {
	defer f.Close()
	listening, err := acceptsConn(int(f.Fd()))
	if err != nil {
		return fmt.Errorf("socket %s: %w", f.Name(), err)
	}
	if !listening {
		conn, err := net.FileConn(f)
		if err != nil {
			return fmt.Errorf("socket %s: %w", f.Name(), err)
		}
		return s.ServeConn(ctx, conn)
	}
	l, err := net.FileListener(f)
	if err != nil {
		return fmt.Errorf("socket %s: %w", f.Name(), err)
	}
	defer l.Close()
	return s.acceptLoop(ctx, l)
}

// acceptLoop serves each connection of l in turn's own goroutine until
// no connection came for IdleTimeout and none is open.
func (s *Server) acceptLoop(ctx context.Context, l net.Listener) error {
	ul, _ := l.(*net.UnixListener)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		if ul != nil && s.IdleTimeout > 0 {
			_ = ul.SetDeadline(time.Now().Add(s.IdleTimeout))
		}
		conn, err := l.Accept()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			wg.Wait()
			return nil
		}
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, conn); err != nil {
				s.log().Warnf("varlink connection: %v", err)
			}
		}()
	}
}

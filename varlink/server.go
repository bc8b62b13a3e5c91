package varlink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// Error is a Varlink error reply: a qualified name and its parameters
// (nil for none).
type Error struct {
	Name       string
	Parameters any
}

func (e *Error) Error() string {
	if e.Parameters == nil {
		return e.Name
	}
	return fmt.Sprintf("%s %v", e.Name, e.Parameters)
}

// The org.varlink.service errors this service sends.
func errInvalidParameter(name string) *Error {
	return &Error{Name: "org.varlink.service.InvalidParameter", Parameters: map[string]string{"parameter": name}}
}

func errMethodNotFound(method string) *Error {
	return &Error{Name: "org.varlink.service.MethodNotFound", Parameters: map[string]string{"method": method}}
}

var (
	errExpectedMore     = &Error{Name: "org.varlink.service.ExpectedMore"}
	errPermissionDenied = &Error{Name: "org.varlink.service.PermissionDenied"}
)

// Peer is who is calling: the credentials of the connected process
// (SO_PEERCRED), or Known false when they could not be read.
type Peer struct {
	UID, PID int
	Known    bool
}

// Privileged reports whether the peer is root, the only caller allowed to
// change merges (systemd asks polkit; without it only root passes).
func (p Peer) Privileged() bool { return p.Known && p.UID == 0 }

// Request is one call as a method sees it.
type Request struct {
	Call *Call
	Peer Peer
	// reply sends one (streamed) reply; continues marks more to come.
	reply func(params any, continues bool) error
}

// Reply sends a reply. With continues set, more replies follow (only for
// calls made with "more").
func (r *Request) Reply(params any, continues bool) error { return r.reply(params, continues) }

// Method handles one call. It returns an *Error to answer with it; any
// other error is answered as io.systemd.System (errnoReply).
type Method func(ctx context.Context, r *Request) error

// Server dispatches calls to Methods by their qualified name.
type Server struct {
	Methods map[string]Method
	Info    Info
	Log     *oplog.Logger
	// IdleTimeout ends serving a listening socket after this long without
	// a connection (0: never).
	IdleTimeout time.Duration
}

// ServeConn serves one connection until the peer closes it or breaks the
// protocol; it closes conn.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	peer := peerOf(conn)
	br := bufio.NewReaderSize(conn, 64<<10)
	for {
		msg, err := readMessage(br, MaxMessage)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		call, err := ParseCall(msg)
		if err != nil {
			return err
		}
		if err := s.dispatch(ctx, conn, call, peer); err != nil {
			return err
		}
	}
}

// dispatch runs one call and writes its replies; an error return ends the
// connection (a failed write).
func (s *Server) dispatch(ctx context.Context, w io.Writer, call *Call, peer Peer) error {
	sent := false
	write := func(r reply) error {
		if call.Oneway {
			return nil
		}
		b, err := encodeReply(r)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	req := &Request{Call: call, Peer: peer}
	req.reply = func(params any, continues bool) error {
		if continues && !call.More {
			return errors.New("varlink: continued reply to a call without more")
		}
		sent = true
		return write(reply{Parameters: params, Continues: continues})
	}
	m, ok := s.Methods[call.Method]
	if !ok && isServiceMethod(call.Method) {
		m, ok = s.serviceMethod(call.Method), true
	}
	var err error
	if !ok {
		err = errMethodNotFound(call.Method)
	} else {
		err = m(ctx, req)
	}
	if err == nil {
		if !sent {
			return write(reply{})
		}
		return nil
	}
	var verr *Error
	if !errors.As(err, &verr) {
		s.log().Errorf("varlink %s: %v", call.Method, err)
		verr = errnoError(err)
	}
	return write(reply{Error: verr.Name, Parameters: verr.Parameters})
}

func (s *Server) log() *oplog.Logger {
	if s.Log == nil {
		return oplog.Discard()
	}
	return s.Log
}

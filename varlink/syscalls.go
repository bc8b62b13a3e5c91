package varlink

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// The socket options read here, each retried on EINTR, errors naming the
// operation and the descriptor.

// peerCred reads SO_PEERCRED of a connected unix socket.
func peerCred(fd int) (*unix.Ucred, error) {
	cred, err := sysx.RetryValue(func() (*unix.Ucred, error) {
		return unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return nil, os.NewSyscallError("getsockopt SO_PEERCRED", err)
	}
	return cred, nil
}

// acceptsConn reports whether fd is a listening socket (SO_ACCEPTCONN).
func acceptsConn(fd int) (bool, error) {
	v, err := sysx.RetryValue(func() (int, error) {
		return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	})
	if err != nil {
		return false, os.NewSyscallError("getsockopt SO_ACCEPTCONN", err)
	}
	return v != 0, nil
}

// peerOf returns the credentials of conn's peer (unix sockets only).
func peerOf(conn net.Conn) Peer {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return Peer{}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Peer{}
	}
	var p Peer
	_ = raw.Control(func(fd uintptr) {
		if c, err := peerCred(int(fd)); err == nil {
			p = Peer{UID: int(c.Uid), PID: int(c.Pid), Known: true}
		}
	})
	return p
}

// unixSocketpair is socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC) (tests).
func unixSocketpair() ([2]int, error) {
	fds, err := sysx.RetryValue(func() ([2]int, error) {
		return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	})
	if err != nil {
		return fds, os.NewSyscallError("socketpair", err)
	}
	return fds, nil
}

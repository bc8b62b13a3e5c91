package varlink

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// errnoError turns a failure into sd-varlink's generic error,
// io.systemd.System with the Linux errno (the first one in err's chain,
// EIO when there is none), as systemd-sysext answers a failed method.
func errnoError(err error) *Error {
	en := syscall.Errno(unix.EIO)
	var e syscall.Errno
	if errors.As(err, &e) && e != 0 {
		en = e
	}
	p := systemError{Origin: "linux", Errno: int(en)}
	if name := unix.ErrnoName(en); name != "" {
		p.ErrnoName = name
	}
	return &Error{Name: "io.systemd.System", Parameters: p}
}

// systemError is io.systemd.System's parameters, in systemd's order.
type systemError struct {
	Origin    string `json:"origin"`
	Errno     int    `json:"errno"`
	ErrnoName string `json:"errnoName,omitempty"`
}

package oplog

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The system calls of package oplog, each retried on EINTR and returning
// errors that name the operation and the descriptor.

// fstat is fstat(2) on fd.
func fstat(fd int) (unix.Stat_t, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstat(fd, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("fstat fd %d: %w", fd, err)
		}
		return st, nil
	}
}

// isTerminal reports whether fd is a terminal (TCGETS succeeds, as
// isatty(3) asks).
func isTerminal(fd int) bool {
	for {
		_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err == unix.EINTR {
			continue
		}
		return err == nil
	}
}

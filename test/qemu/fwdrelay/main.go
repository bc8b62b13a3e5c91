// Command fwdrelay joins one guest TCP connection to a server on the
// host's loopback: QEMU's user network runs it for each connection the
// guest opens to a guestfwd address (`guestfwd=tcp:IP:PORT-cmd:fwdrelay
// 127.0.0.1:N`), with the connection on its standard input and output.
// It is how the fetch boot test lets the guest reach the test's HTTPS
// server and nothing else (the user network is restricted). It writes
// nothing to standard error, which is the guest's connection too.
package main

import (
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 2 || !strings.HasPrefix(os.Args[1], "127.0.0.1:") {
		os.Exit(2) // loopback only
	}
	c, err := net.DialTimeout("tcp", os.Args[1], 5*time.Second)
	if err != nil {
		os.Exit(1) // the guest sees its connection closed: server down
	}
	tc := c.(*net.TCPConn)
	go func() {
		io.Copy(tc, os.Stdin)
		tc.CloseWrite()
	}()
	io.Copy(os.Stdout, tc)
}

// Package pcrstub stands in for systemd-pcrextend on its Varlink socket in
// the QEMU guests, which boot without a TPM: it records the word of every
// io.systemd.PCRExtend.Extend call for the "verity" NvPCR with event type
// dm_verity and answers as systemd does on success, so a test can see what
// systemd 262 and ext-setup-root ask to have measured.
package pcrstub

import (
	"bufio"
	"encoding/json"
	"net"
	"sync"

	"github.com/ext-setup-root/ext-setup-root/internal/varlink"
)

// Stub is a listening stand-in.
type Stub struct {
	l     net.Listener
	mu    sync.Mutex
	words []string
	other []string // calls that are not such an Extend
}

// Start listens on the unix socket path (which must not exist).
func Start(path string) (*Stub, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	s := &Stub{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.serve(c)
		}
	}()
	return s, nil
}

// Close stops listening and removes the socket.
func (s *Stub) Close() error { return s.l.Close() }

func (s *Stub) serve(c net.Conn) {
	defer c.Close()
	m, err := varlink.ReadMessage(bufio.NewReader(c), varlink.MaxMessage)
	if err != nil {
		return
	}
	var call struct {
		Method     string
		Parameters struct{ NvPCR, Text, EventType string }
	}
	json.Unmarshal(m, &call)
	s.mu.Lock()
	if call.Method == "io.systemd.PCRExtend.Extend" && call.Parameters.NvPCR == "verity" && call.Parameters.EventType == "dm_verity" {
		s.words = append(s.words, call.Parameters.Text)
	} else {
		s.other = append(s.other, string(m))
	}
	s.mu.Unlock()
	c.Write([]byte("{\"parameters\":{}}\x00"))
}

// Take returns and forgets the words, and the other calls, seen so far.
func (s *Stub) Take() (words, other []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	words, other = s.words, s.other
	s.words, s.other = nil, nil
	return words, other
}

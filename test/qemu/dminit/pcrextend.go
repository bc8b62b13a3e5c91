package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/varlink"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// pcrextend stands in for systemd-pcrextend on its socket
// (/run/systemd/io.systemd.PCRExtend): it records the word of every
// io.systemd.PCRExtend.Extend call for the "verity" NvPCR with event type
// dm_verity, and answers as systemd does on success.
type pcrextend struct {
	mu    sync.Mutex
	words []string
	other []string // calls that are not such an Extend
}

func startPCRExtend() *pcrextend {
	p := &pcrextend{}
	os.MkdirAll("/run", 0o755)
	unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755")
	os.MkdirAll("/run/systemd", 0o755)
	l, err := net.Listen("unix", paths.PCRExtendSocket)
	if err != nil {
		r("pcrextend", "listen error %v", err)
		return p
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.serve(c)
		}
	}()
	return p
}

func (p *pcrextend) serve(c net.Conn) {
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
	p.mu.Lock()
	if call.Method == "io.systemd.PCRExtend.Extend" && call.Parameters.NvPCR == "verity" && call.Parameters.EventType == "dm_verity" {
		p.words = append(p.words, call.Parameters.Text)
	} else {
		p.other = append(p.other, string(m))
	}
	p.mu.Unlock()
	c.Write([]byte("{\"parameters\":{}}\x00"))
}

// take reports and forgets the words (and other calls) seen so far.
func (p *pcrextend) take(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r(name+"_measured", "%d %s", len(p.words), strings.Join(p.words, " "))
	if len(p.other) != 0 {
		r(name+"_other_calls", "%s", strings.Join(p.other, " "))
	}
	p.words, p.other = nil, nil
}

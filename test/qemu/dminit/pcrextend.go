package main

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/paths"
	"github.com/ext-setup-root/ext-setup-root/test/qemu/pcrstub"
)

// pcrextend is the guest's stand-in for systemd-pcrextend on its socket
// (/run/systemd/io.systemd.PCRExtend, on a tmpfs /run).
type pcrextend struct{ s *pcrstub.Stub }

func startPCRExtend() *pcrextend {
	os.MkdirAll("/run", 0o755)
	unix.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755")
	os.MkdirAll("/run/systemd", 0o755)
	s, err := pcrstub.Start(paths.PCRExtendSocket)
	if err != nil {
		r("pcrextend", "listen error %v", err)
	}
	return &pcrextend{s}
}

// take reports and forgets the words (and other calls) seen so far.
func (p *pcrextend) take(name string) {
	if p.s == nil {
		return
	}
	words, other := p.s.Take()
	r(name+"_measured", "%d %s", len(words), strings.Join(words, " "))
	if len(other) != 0 {
		r(name+"_other_calls", "%s", strings.Join(other, " "))
	}
}

package extension

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/release"
)

// Handoff carries the images a Stack opened (the prepare step's dedup,
// OpenStack) to the Merge or Refresh of the same class and root that
// follows in the same process, so that the pre stage discovers, opens,
// checks (loop and dm-verity set-up, signature, extension-release) and
// fingerprints each confext image once instead of twice.
//
// Nothing the merge decides changes: under its hierarchy locks the merge
// still discovers the images and takes each one's identity; it adopts an
// image the stack opened only when the name, path, type and identity are
// those the stack saw and everything else that decides a verdict (host
// release and scope, image policy, --force, trusted certificates) is
// unchanged. Any other image, and every image the stack refused, is
// opened and checked again as before. The zero value is ready to use;
// Close releases what no merge took.
type Handoff struct {
	mu sync.Mutex
	p  *prepared
}

// prepared is what a closed Stack left for the merge: its accepted images,
// still open, by name, and the key of everything besides the images that
// decided their verdicts.
type prepared struct {
	key   string
	cands map[string]*candidate
}

// put stores p, releasing what an earlier stack left and no merge took.
func (h *Handoff) put(p *prepared) {
	h.mu.Lock()
	old := h.p
	h.p = p
	h.mu.Unlock()
	old.close()
}

// take removes and returns what the handoff holds (nil if nothing); the
// caller then owns it.
func (h *Handoff) take() *prepared {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.p
	h.p = nil
	return p
}

// Close releases the images no merge took. Safe on nil and repeatable.
func (h *Handoff) Close() {
	h.take().close()
}

// close releases every image p still holds; nil-safe.
func (p *prepared) close() {
	if p == nil {
		return
	}
	for _, c := range p.cands {
		if c.opened != nil {
			c.opened.Close()
			c.opened = nil
		}
	}
	p.cands = nil
}

// verdictKey hashes everything besides the image itself that decides
// check's verdict on an image: the root and class, the host release and
// scope, the effective image policy, --force and the trusted verity.d
// certificates. Equal keys and an equal identity give the same verdict.
func (e *engine) verdictKey(host release.Host, scope string) (string, error) {
	pol, _, err := e.imagePolicy()
	if err != nil {
		return "", err
	}
	s := sha256.New()
	fmt.Fprintf(s, "root=%s\x00class=%s\x00host=%s\x00policy=%s\x00force=%t\x00certs=%s\x00",
		e.rootPath, e.cls.Name, record.HostReleaseHash(host, scope), pol, e.opt.Force, e.certsFingerprint())
	return hex.EncodeToString(s.Sum(nil)), nil
}

// handOver gives the accepted images of cands to h under key, and
// releases the others; the stack no longer holds any of them.
func handOver(h *Handoff, key string, cands []*candidate) {
	p := &prepared{key: key, cands: map[string]*candidate{}}
	for _, c := range cands {
		if c.opened == nil {
			continue
		}
		if c.accepted && !c.transient {
			p.cands[c.img.Name] = c
			continue
		}
		c.opened.Close()
		c.opened = nil
	}
	h.put(p)
}

// reuse is what a merge call took from its Handoff: the images it may
// adopt, and the names of those it could not.
type reuse struct {
	p        *prepared
	adopted  int
	reopened []string
}

// takePrepared takes the images a stack handed over for this call; they
// are released by reuse.close unless adopted.
func (e *engine) takePrepared() *reuse {
	return &reuse{p: e.opt.Handoff.take()}
}

// match keeps the handed-over images only when everything besides the
// images that decides a verdict is what the stack saw; else they are
// released and every image is checked again.
func (r *reuse) match(e *engine, c *call) {
	if r.p == nil {
		return
	}
	key, err := e.verdictKey(c.host, c.scope)
	if err != nil || key != r.p.key {
		e.log.Infof("%s images opened by the prepare step not reused: the host release, image policy or certificates changed since", e.cls.Name)
		r.p.close()
		r.p = nil
	}
}

// adopt gives cd the image the stack opened and accepted for the same
// name, path, type and identity, with its verdict and fingerprint; false
// when there is none (cd is then checked as usual).
func (r *reuse) adopt(cd *candidate) bool {
	if r.p == nil {
		return false
	}
	pc, ok := r.p.cands[cd.img.Name]
	if !ok {
		return false
	}
	delete(r.p.cands, cd.img.Name)
	if pc.img.Path != cd.img.Path || pc.img.Type != cd.img.Type || pc.id != cd.id {
		r.reopened = append(r.reopened, cd.img.Name)
		pc.opened.Close()
		pc.opened = nil
		return false
	}
	cd.opened, cd.accepted, cd.reason = pc.opened, true, ""
	if cd.fp == "" { // a refresh's skip test may have walked it already
		cd.fp = pc.fp
	}
	pc.opened = nil
	r.adopted++
	return true
}

// report logs what was reused and what had changed since the stack
// looked at it.
func (r *reuse) report(e *engine) {
	if r.adopted == 0 && len(r.reopened) == 0 {
		return
	}
	msg := fmt.Sprintf("%s: reused %d image(s) opened by the prepare step", e.cls.Name, r.adopted)
	if len(r.reopened) > 0 {
		sort.Strings(r.reopened)
		msg += fmt.Sprintf("; opened again, changed since: %s", strings.Join(r.reopened, ", "))
	}
	e.log.Infof("%s", msg)
}

// close releases the handed-over images not adopted.
func (r *reuse) close() {
	r.p.close()
	r.p = nil
}

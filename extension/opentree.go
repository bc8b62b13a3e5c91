package extension

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/record"
)

// ImageTree is one image opened read-only for reading its files outside a
// merge (a layer of OpenStack): Dir is its tree at the class's hierarchy
// (etc/ of a confext). The image itself (detached mounts, loop and dm
// devices) belongs to the Stack.
type ImageTree struct {
	Dir   *os.File
	Where string // the image file, for messages
	Name  string // the image's name
}

// Close releases the tree's directory fd.
func (t *ImageTree) Close() error {
	if t.Dir == nil {
		return nil
	}
	err := t.Dir.Close()
	t.Dir = nil
	return err
}

// Stack is the images a merge of the class would stack, opened read-only
// with the merge's own rules, for reading what the merge will show.
// Layers is top layer first (the order of overlayfs's lowerdir=: the
// image sorting last by name is on top); an accepted image without the
// class's hierarchy is not a layer. Close releases every image, or, with
// Options.Handoff, hands the accepted ones to the merge that follows.
type Stack struct {
	Layers []ImageTree
	// Names are the accepted images, ascending (as Result.Merged).
	Names []string
	// Skipped are the images the merge would leave out, with the reason.
	Skipped []Skip
	// cands are the images checked, owned by the stack until Close; key
	// is their verdictKey; handoff is Options.Handoff.
	cands   []*candidate
	key     string
	handoff *Handoff
}

// Close releases every layer's tree; the images go to the handoff if
// there is one (the merge adopts those still unchanged), else are
// released.
func (s *Stack) Close() {
	for i := range s.Layers {
		s.Layers[i].Close()
	}
	s.Layers = nil
	if s.handoff != nil && s.key != "" {
		handOver(s.handoff, s.key, s.cands)
		s.cands = nil
	}
	for _, c := range s.cands {
		if c.opened != nil {
			c.opened.Close()
			c.opened = nil
		}
	}
	s.cands = nil
}

// OpenStack computes, without changing anything, the stack of images a
// merge of opt's class in opt.Root would use: the same discovery (first
// search directory holding a name wins, .v/ picking), the same identity
// step, the same checks (image policy, dm-verity and signature for raw
// images, extension-release against the root's os-release, forbidden
// content) and the same order; no layers when the class's first hierarchy
// is not merged at all (SYSTEMD_<CLASS>_HIERARCHIES). An essential image
// (opt.Essential) that the merge would refuse is an error, as it fails the
// merge. The prepare step's dedup uses it to remove only what the merged
// hierarchy will show unchanged.
func OpenStack(opt Options) (*Stack, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	if len(e.cls.Hierarchies) == 0 {
		return nil, errors.New("extension: class without hierarchy")
	}
	if _, _, err := e.imagePolicy(); err != nil {
		return nil, err
	}
	host, scope, err := e.hostRelease()
	if err != nil {
		return nil, err
	}
	imgs, err := e.discover()
	if err != nil {
		return nil, fmt.Errorf("discover %s images: %w", e.cls.Name, err)
	}
	st := &Stack{}
	if !slices.Contains(e.hiers, e.cls.Hierarchies[0]) {
		// The merge does not cover the hierarchy (SYSTEMD_*_HIERARCHIES):
		// nothing of an image shows there.
		return st, nil
	}
	ok := false
	defer func() {
		if !ok {
			st.Close()
		}
	}()
	for _, img := range imgs {
		id, err := record.ImageIdentity(e.rfs, img, e.identityOptions())
		if err != nil {
			if e.essential(img.Name) {
				return nil, &imageError{img.Name, e.display(img.Path), "essential image cannot be identified", err}
			}
			st.Skipped = append(st.Skipped, Skip{Name: img.Name, Reason: fmt.Sprintf("cannot identify image: %v", err)})
			continue
		}
		c := &candidate{img: img, id: id}
		st.cands = append(st.cands, c)
		if err := e.check(c, host, scope); err != nil {
			return nil, err
		}
		if !c.accepted {
			st.Skipped = append(st.Skipped, Skip{Name: img.Name, Reason: c.reason})
			if c.opened != nil {
				c.opened.Close()
				c.opened = nil
			}
		}
	}
	if err := st.layers(e); err != nil {
		return nil, err
	}
	if opt.Handoff != nil {
		if st.key, err = e.verdictKey(host, scope); err != nil {
			return nil, err
		}
		st.handoff = opt.Handoff
	}
	ok = true
	return st, nil
}

// layers fills in the accepted images, top layer first; the images stay
// the stack's (st.cands).
func (st *Stack) layers(e *engine) error {
	h := e.cls.Hierarchies[0]
	for i := len(st.cands) - 1; i >= 0; i-- {
		c := st.cands[i]
		if !c.accepted {
			continue
		}
		st.Names = append([]string{c.img.Name}, st.Names...)
		dir, err := c.opened.layer(h)
		if err != nil {
			return &imageError{c.img.Name, e.display(c.img.Path), "cannot open hierarchy " + h + " in image", err}
		}
		if dir == nil {
			continue
		}
		rd, err := reopen(dir, unix.O_RDONLY|unix.O_DIRECTORY)
		dir.Close()
		if err != nil {
			return &imageError{c.img.Name, e.display(c.img.Path), "cannot open " + h, err}
		}
		st.Layers = append(st.Layers, ImageTree{Dir: rd, Where: e.display(c.img.Path), Name: c.img.Name})
	}
	return nil
}

package prepare

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Layer is one confext image the merge will stack over /etc: Dir is its
// etc/ tree, opened read-only as the merge opens it.
type Layer struct {
	Name  string
	Where string // the image file, for messages
	Dir   *os.File
}

// Stack is the confext images the merge that follows the prepare step
// will use, as it will use them (OpenStack in package extension): Layers
// top first (overlayfs's lowerdir= order), Skipped the images it will
// leave out and why. Close releases the images.
type Stack struct {
	Layers  []Layer
	Skipped []string
	Close   func()
}

// stack is the dedup's view of the layers below /etc.
type stack struct {
	fds   []int
	def   int    // the default confext's index in fds
	from  string // the default, for messages
	close func()
}

func (s *stack) top() []lower {
	out := make([]lower, 0, len(s.fds))
	for i, fd := range s.fds {
		out = append(out, lower{fd: fd, layer: i})
		if opaque, err := isOpaque(fd); err != nil || opaque {
			break
		}
	}
	return out
}

// openStack opens what will show through below /etc. With
// Options.Confexts (the boot stages) that is the merge's stack, and the
// default confext (Dedup.DefaultsConfext) must be in it; without (a caller
// with no extension engine) the first existing Dedup.DefaultsDirs is taken
// as the one layer below /etc, Flatcar's classic overlay. nil, nil when
// nothing will show the defaults: then nothing may be removed.
func (r *run) openStack() (*stack, error) {
	c := &r.o.Config.Dedup
	if r.o.NoDedup != "" {
		r.log.Infof("prepare: no dedup: %s", r.o.NoDedup)
		return nil, nil
	}
	if r.o.Confexts != nil {
		return r.openConfexts(c.DefaultsConfext)
	}
	var tried []string
	for _, d := range c.DefaultsDirs {
		fd, err := openIn(r.live, d, unix.O_RDONLY|unix.O_DIRECTORY, false)
		if err == nil {
			return &stack{fds: []int{fd}, from: r.display(d), close: func() { closeFd(fd) }}, nil
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			return nil, pathErr("open", r.display(d), err)
		}
		tried = append(tried, r.display(d))
	}
	r.log.Infof("prepare: no vendor defaults found (%s); no dedup", strings.Join(tried, ", "))
	return nil, nil
}

// openConfexts asks for the merge's stack and finds the default confext
// in it.
func (r *run) openConfexts(name string) (*stack, error) {
	if name == "" {
		r.log.Infof("prepare: no default confext configured (prepare.dedup.defaults_confext); no dedup")
		return nil, nil
	}
	if r.etcPath != "/etc" {
		r.log.Infof("prepare: the confext merge covers /etc, not %s; no dedup", r.display(r.etcPath))
		return nil, nil
	}
	st, err := r.o.Confexts()
	if err != nil {
		return nil, fmt.Errorf("the confexts the merge will use (no dedup): %w", err)
	}
	s := &stack{def: -1, close: st.Close}
	for i, l := range st.Layers {
		s.fds = append(s.fds, int(l.Dir.Fd()))
		if l.Name == name {
			s.def, s.from = i, fmt.Sprintf("%s (%s)", name, l.Where)
		}
	}
	if s.def < 0 {
		st.Close()
		r.log.Infof("prepare: the default confext %s will not be merged%s; no dedup", name, describeSkipped(st.Skipped))
		return nil, nil
	}
	return s, nil
}

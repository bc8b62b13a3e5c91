package mount

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Layer is one overlay directory, given as an open directory (preferred:
// it was resolved inside the target root and cannot be swapped) or a path.
type Layer struct {
	Path string
	File *os.File // used instead of Path when not nil
}

// OverlaySpec describes an overlay mount. Each lower layer is passed as its
// own "lowerdir+" parameter, so names may contain ',', ':' or spaces and the
// number of layers is not limited by the page-sized option string of
// mount(2).
type OverlaySpec struct {
	Source  string  // shown as the source in mountinfo, e.g. "systemd-confext"
	Lower   []Layer // top first
	Upper   *Layer  // nil for a read-only overlay
	Work    *Layer  // required with Upper
	Options []string
	Attrs   uint64 // MOUNT_ATTR_* for the detached mount
}

// useLayerFds is false only in tests, to exercise the /proc/self/fd path
// that kernels before 6.13 take.
var useLayerFds = true

// MountOverlay builds a detached overlay mount from spec and returns its
// mount fd; attach it with Attach. The layer files may be closed once it
// returns.
func MountOverlay(spec OverlaySpec) (*os.File, error) {
	if len(spec.Lower) == 0 {
		return nil, &Error{Op: "overlay", FSType: "overlay", Source: spec.Source, Err: errors.New("no lower layer")}
	}
	if (spec.Upper == nil) != (spec.Work == nil) {
		return nil, &Error{Op: "overlay", FSType: "overlay", Source: spec.Source, Err: errors.New("upper and work layers must be given together")}
	}
	source := spec.Source
	if source == "" {
		source = "overlay"
	}
	c, err := NewFS("overlay", source)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	for _, o := range spec.Options {
		k, v, hasValue := strings.Cut(o, "=")
		if hasValue {
			err = c.SetString(k, v)
		} else {
			err = c.SetFlag(k)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, l := range spec.Lower {
		if err := setLayer(c, "lowerdir+", l); err != nil {
			return nil, err
		}
	}
	if spec.Upper != nil {
		if err := setLayer(c, "upperdir", *spec.Upper); err != nil {
			return nil, err
		}
		if err := setLayer(c, "workdir", *spec.Work); err != nil {
			return nil, err
		}
	}
	return c.Mount(spec.Attrs)
}

// setLayer passes one layer: by fd (FSCONFIG_SET_FD, Linux >= 6.13 accepts
// it for lowerdir+, datadir+, upperdir and workdir) or, when the kernel
// refuses an fd with EINVAL, by the magic link /proc/self/fd/N, which still
// names exactly the opened directory; paths go as FSCONFIG_SET_STRING.
func setLayer(c *FSContext, key string, l Layer) error {
	if l.File == nil {
		return c.SetString(key, l.Path)
	}
	defer runtime.KeepAlive(l.File)
	fd := int(l.File.Fd())
	if useLayerFds {
		err := c.SetFd(key, fd)
		if err == nil || !errors.Is(err, unix.EINVAL) {
			return err
		}
	}
	// A kernel without fd support for this key says EINVAL; the fallback's
	// own error, if any, is what the caller sees.
	return c.SetString(key, fmt.Sprintf("/proc/self/fd/%d", fd))
}

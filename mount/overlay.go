package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Layer is one overlay directory, given as an open directory (preferred:
// it was resolved inside the target root and cannot be swapped) or a path.
type Layer struct {
	Path string
	File *os.File // used instead of Path when not nil
}

// OverlaySpec describes an overlay mount. On Linux >= 6.8 each lower layer
// is passed as its own "lowerdir+" parameter, so names may contain ',', ':'
// or spaces and the number of layers is not limited by the page-sized
// option string of mount(2); older kernels get one escaped "lowerdir="
// string (see MountOverlay).
type OverlaySpec struct {
	Source  string  // shown as the source in mountinfo, e.g. "systemd-confext"
	Lower   []Layer // top first
	Upper   *Layer  // nil for a read-only overlay
	Work    *Layer  // required with Upper
	Options []string
	Attrs   uint64 // MOUNT_ATTR_* for the detached mount
	// Features selects the kernel paths; nil means the running kernel's
	// (Kernel()). Tests pass an older kernel's table to force fallbacks.
	Features *Features
}

// FsconfigStringMax is the longest value FSCONFIG_SET_STRING takes: the
// kernel copies at most 256 bytes including the terminating NUL and
// refuses longer values with EINVAL.
const FsconfigStringMax = 255

// ErrLowerdirTooLong is wrapped by MountOverlay's error when, without
// lowerdir+ (Linux < 6.8), the single lowerdir= string of all lower layers
// would exceed FsconfigStringMax.
var ErrLowerdirTooLong = errors.New("lowerdir= string longer than fsconfig accepts")

// MountOverlay builds a detached overlay mount from spec and returns its
// mount fd; attach it with Attach. The layer files may be closed once it
// returns.
//
// How layers reach the kernel depends on spec.Features:
//   - LayerFds: each layer by fd (FSCONFIG_SET_FD);
//   - else LowerdirPlus: each lower layer as its own "lowerdir+" string,
//     "/proc/self/fd/N" for an open directory;
//   - else one "lowerdir=" string, layers separated by ':' with '\', ':'
//     and ',' escaped by '\'. Open directories are named by their fd
//     number relative to /proc/self/fd (the thread doing the mount has
//     that as its own working directory), 2-4 bytes each, so about 60
//     layers fit into the 255 bytes fsconfig allows; beyond that (or with
//     long paths) the mount fails with ErrLowerdirTooLong and nothing is
//     changed. Before Linux 6.5 overlayfs also refuses any ',' in a value.
//   - without DetachedLayers, layers on detached mounts (fsmount,
//     open_tree clones) are attached to a private staging tmpfs while the
//     overlay is created (see stageDetached).
func MountOverlay(spec OverlaySpec) (*os.File, error) {
	if len(spec.Lower) == 0 {
		return nil, &Error{Op: "overlay", FSType: "overlay", Source: spec.Source, Err: errors.New("no lower layer")}
	}
	if (spec.Upper == nil) != (spec.Work == nil) {
		return nil, &Error{Op: "overlay", FSType: "overlay", Source: spec.Source, Err: errors.New("upper and work layers must be given together")}
	}
	feat := featuresOr(spec.Features)
	if !feat.DetachedLayers {
		st, err := stageDetached(spec.layers())
		if err != nil {
			return nil, err
		}
		defer st.release()
	}
	if feat.LowerdirPlus {
		return mountOverlay(spec, feat)
	}
	// Relative paths would resolve against /proc/self/fd below.
	lower := make([]Layer, len(spec.Lower))
	for i, l := range spec.Lower {
		if l.File == nil && !filepath.IsAbs(l.Path) {
			abs, err := filepath.Abs(l.Path)
			if err != nil {
				return nil, err
			}
			l.Path = abs
		}
		lower[i] = l
	}
	spec.Lower = lower
	// Relative fd names need a working directory of our own: run on a
	// locked thread that unshares its fs_struct (cwd) from the process,
	// and let that thread exit afterwards (no UnlockOSThread).
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			ch <- result{err: &Error{Op: "unshare", Data: "CLONE_FS", Err: err}}
			return
		}
		if err := unix.Chdir("/proc/self/fd"); err != nil {
			ch <- result{err: &Error{Op: "chdir", Target: "/proc/self/fd", Err: err}}
			return
		}
		f, err := mountOverlay(spec, feat)
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

func (spec *OverlaySpec) layers() []Layer {
	ls := append([]Layer(nil), spec.Lower...)
	if spec.Upper != nil {
		ls = append(ls, *spec.Upper, *spec.Work)
	}
	return ls
}

func mountOverlay(spec OverlaySpec, feat *Features) (*os.File, error) {
	defer runtime.KeepAlive(spec.Lower)
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
	if feat.LowerdirPlus {
		for _, l := range spec.Lower {
			if err := setLayer(c, feat, "lowerdir+", l); err != nil {
				return nil, err
			}
		}
	} else {
		v := LowerdirString(spec.Lower)
		if len(v) > FsconfigStringMax {
			return nil, &Error{Op: "fsconfig", FSType: "overlay", Source: source, Data: fmt.Sprintf("lowerdir=<%d layers, %d bytes>", len(spec.Lower), len(v)),
				Err: fmt.Errorf("%w: %d bytes, at most %d on a kernel without lowerdir+ (Linux < 6.8); merge fewer layers or use Linux >= 6.8", ErrLowerdirTooLong, len(v), FsconfigStringMax)}
		}
		if err := c.SetString("lowerdir", v); err != nil {
			return nil, err
		}
	}
	if spec.Upper != nil {
		if err := setLayer(c, feat, "upperdir", *spec.Upper); err != nil {
			return nil, err
		}
		if err := setLayer(c, feat, "workdir", *spec.Work); err != nil {
			return nil, err
		}
	}
	return c.Mount(spec.Attrs)
}

// LowerdirString is the single "lowerdir=" value for layers (top first),
// used on kernels without lowerdir+: open directories by fd number
// (relative to /proc/self/fd, the mounting thread's working directory),
// paths escaped for overlayfs, which splits the value at ':' and takes the
// character after '\' literally; ',' is escaped too because kernels before
// 6.5 pass the value on in a comma-separated option string.
func LowerdirString(layers []Layer) string {
	var b strings.Builder
	for i, l := range layers {
		if i > 0 {
			b.WriteByte(':')
		}
		if l.File != nil {
			b.WriteString(strconv.Itoa(int(l.File.Fd())))
			continue
		}
		b.WriteString(EscapeLayerPath(l.Path))
	}
	return b.String()
}

// EscapeLayerPath escapes '\', ':' and ',' in p with a backslash, as
// overlayfs expects in lowerdir= (and in upperdir=/workdir= of a mount(2)
// option string).
func EscapeLayerPath(p string) string {
	if !strings.ContainsAny(p, `\:,`) {
		return p
	}
	var b strings.Builder
	for _, r := range p {
		if r == '\\' || r == ':' || r == ',' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// setLayer passes one layer: by fd (FSCONFIG_SET_FD) where the kernel
// takes overlay layers that way (feat.LayerFds, Linux >= 6.13), else by
// the magic link /proc/self/fd/N, which still names exactly the opened
// directory; paths go as FSCONFIG_SET_STRING.
func setLayer(c *FSContext, feat *Features, key string, l Layer) error {
	if l.File == nil {
		return c.SetString(key, l.Path)
	}
	defer runtime.KeepAlive(l.File)
	fd := int(l.File.Fd())
	if feat.LayerFds {
		return c.SetFd(key, fd)
	}
	return c.SetString(key, procFdPath(l.File))
}

package mount

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// MinKernel is the oldest Linux release this package supports (Debian 12's
// 6.1 LTS): the new mount API with overlayfs through fsconfig, open_tree,
// mount_setattr and statx mount ids all exist there. Older kernels get one
// clear error from CheckKernel before anything is changed.
var MinKernel = [2]int{6, 1}

// Features is what the running kernel offers of what this package and its
// callers use, probed once per process (Probe) rather than guessed from the
// release number or from one errno of a real operation. Each missing
// feature has a working path:
//
//   - LayerFds (6.13): overlay layers passed as fds with FSCONFIG_SET_FD;
//     else as /proc/self/fd/N path strings, which name exactly the opened
//     directory.
//   - LowerdirPlus (6.8): one "lowerdir+" parameter per lower layer; else
//     one "lowerdir=" string of escaped, colon-separated layers, which
//     FSCONFIG_SET_STRING limits to 255 bytes (see MountOverlay).
//   - DetachedLayers (6.15): layers may live on detached mounts (fsmount,
//     open_tree clones); else such mounts are attached to a private
//     staging tmpfs for the moment the overlay is created.
//   - DetachedTree (6.15): open_tree may clone a directory of a detached
//     mount and move_mount may attach onto one; else such binds are made
//     once the mount is attached (the extension engine protects its
//     metadata directory right after attaching the merge).
//   - Beneath (6.5): MOVE_MOUNT_BENEATH; else a replacement unmounts the
//     old merge before attaching the new one (a gap, logged and counted).
//   - MntIDUnique (6.8): statx STATX_MNT_ID_UNIQUE; else the reusable
//     legacy mount id (StatxMountID, NameToHandleAt fall back by
//     themselves).
//   - OverlayNative (6.5): overlayfs parses fsconfig parameters itself;
//     before, the VFS collects them into a legacy option string, checks
//     them only at create time and refuses values containing ','.
type Features struct {
	Release        string // uname -r
	Version        [2]int // major, minor parsed from Release
	LayerFds       bool
	LowerdirPlus   bool
	DetachedLayers bool
	DetachedTree   bool
	Beneath        bool
	MntIDUnique    bool
	OverlayNative  bool
	// Overlay is false when no overlay could be created at all (module
	// missing, no privilege); the other overlay fields are then false.
	Overlay bool
	// OverlayOptions are the overlay parameters callers set (systemd's
	// mutable defaults), each with whether the kernel accepted it. Before
	// OverlayNative the kernel checks them only when a merge is created.
	OverlayOptions []OptionSupport
	// ProbeErrors are the unexpected errors met while probing.
	ProbeErrors []string
	// ProbeTime is how long Probe took (its throwaway mounts are cheap
	// natively, not under emulation); logged with the process start-up.
	ProbeTime time.Duration
}

// OptionSupport is one probed overlay parameter.
type OptionSupport struct {
	Option   string
	Accepted bool
}

// ProbedOverlayOptions are the overlay parameters the extension engine
// sets (systemd's defaults for a mutable merge); all exist since Linux
// 4.19.
var ProbedOverlayOptions = []string{"redirect_dir=on", "metacopy=off", "index=off"}

var (
	probeOnce sync.Once
	probed    *Features
)

// Kernel returns the feature table of the running kernel, probing it on
// first use. Callers that need a different table (tests forcing the
// fallbacks of older kernels) pass their own *Features where an API takes
// one; nothing in a production build changes what Kernel returns.
func Kernel() *Features {
	probeOnce.Do(func() { probed = Probe() })
	return probed
}

// featuresOr returns f, or the probed table when f is nil.
func featuresOr(f *Features) *Features {
	if f != nil {
		return f
	}
	return Kernel()
}

// String renders the table for a debug log line.
func (f *Features) String() string {
	var opts []string
	for _, o := range f.OverlayOptions {
		opts = append(opts, fmt.Sprintf("%s:%v", o.Option, o.Accepted))
	}
	s := fmt.Sprintf("kernel %s: overlay %v, overlay native fs_context %v (6.5), layer fds %v (6.13), lowerdir+ %v (6.8), detached layers %v (6.15), clone of and attach onto detached mounts %v (6.15), move_mount beneath %v (6.5), statx unique mount id %v (6.8), overlay options [%s]",
		f.Release, f.Overlay, f.OverlayNative, f.LayerFds, f.LowerdirPlus, f.DetachedLayers, f.DetachedTree, f.Beneath, f.MntIDUnique, strings.Join(opts, " "))
	if len(f.ProbeErrors) > 0 {
		s += "; probe errors: " + strings.Join(f.ProbeErrors, "; ")
	}
	return s
}

// Fallbacks lists the fallback paths this table makes callers take, for
// a log line ("" when none).
func (f *Features) Fallbacks() string {
	var fb []string
	if !f.LayerFds {
		fb = append(fb, "overlay layers as /proc/self/fd paths")
	}
	if !f.LowerdirPlus {
		fb = append(fb, "one lowerdir= string (at most 255 bytes)")
	}
	if !f.DetachedLayers {
		fb = append(fb, "detached layers attached to a private staging tmpfs")
	}
	if !f.DetachedTree {
		fb = append(fb, "binds into a merge made after attaching it")
	}
	if !f.Beneath {
		fb = append(fb, "replacement by unmount-then-mount (an /etc gap)")
	}
	return strings.Join(fb, ", ")
}

// ErrKernelTooOld is wrapped by CheckKernel's error.
var ErrKernelTooOld = errors.New("kernel too old")

// CheckKernel returns an error wrapping ErrKernelTooOld when f (nil: the
// running kernel) is older than MinKernel.
func CheckKernel(f *Features) error {
	f = featuresOr(f)
	v := f.Version
	if v[0] < MinKernel[0] || (v[0] == MinKernel[0] && v[1] < MinKernel[1]) {
		return fmt.Errorf("%w: Linux %s is older than %d.%d, the oldest release ext-setup-root supports (it needs overlayfs through the new mount API as %d.%d has it); nothing was changed",
			ErrKernelTooOld, f.Release, MinKernel[0], MinKernel[1], MinKernel[0], MinKernel[1])
	}
	return nil
}

// ParseRelease returns major and minor of a kernel release string such as
// "6.1.0-28-amd64" or "6.12.57+deb13-amd64"; ok is false if it has none.
func ParseRelease(r string) (v [2]int, ok bool) {
	parts := strings.SplitN(r, ".", 3)
	if len(parts) < 2 {
		return v, false
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(c rune) bool { return c < '0' || c > '9' }); i >= 0 {
		minor = minor[:i]
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return v, false
	}
	return [2]int{maj, min}, true
}

// Probe asks the running kernel for each feature with throwaway objects: a
// detached tmpfs holding two empty directories, overlay fs contexts that
// are configured (and, where only creating tells, created) but never
// attached, a move_mount on invalid fds and a statx of "/". It changes
// nothing visible and took 1-2 ms in a fresh process on the 6.18 host. It
// needs CAP_SYS_ADMIN; without it the overlay features read as missing.
func Probe() (f *Features) {
	start := time.Now()
	// Throwaway objects only: no fault points (internal/fault).
	fault.Without(func() { f = probe() })
	f.ProbeTime = time.Since(start)
	return f
}

func probe() *Features {
	f := &Features{}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		f.Release = unix.ByteSliceToString(u.Release[:])
		f.Version, _ = ParseRelease(f.Release)
	}
	f.Beneath = BeneathSupported()
	var sx unix.Statx_t
	if err := statx(unix.AT_FDCWD, "/", unix.AT_STATX_DONT_SYNC, unix.STATX_MNT_ID_UNIQUE, &sx); err == nil {
		f.MntIDUnique = sx.Mask&unix.STATX_MNT_ID_UNIQUE != 0
	}
	probeOverlay(f)
	return f
}

// probeOverlay fills the overlay fields of f.
func probeOverlay(f *Features) {
	fail := func(what string, err error) { f.ProbeErrors = append(f.ProbeErrors, what+": "+err.Error()) }
	a, b, closeDirs, err := probeDirs()
	if err != nil {
		fail("probe tmpfs", err)
		return
	}
	defer closeDirs()
	aPath, bPath := procFdPath(a), procFdPath(b)
	if clone, err := BindDetached(a, false); err == nil {
		f.DetachedTree = Attach(clone, b, false) == nil
		clone.Close()
	}

	// A parameter no overlayfs knows: a native parser refuses it at once,
	// the legacy collector (before 6.5) takes anything.
	c, err := NewFS("overlay", "")
	if err != nil {
		fail("fsopen overlay", err)
		return
	}
	f.OverlayNative = c.SetFlag("ext-setup-root-probe") != nil
	c.Close()

	// Layers by fd: only a native parser with fd support accepts them
	// (the legacy collector refuses non-string values). Creating the
	// superblock also tells whether detached layers are allowed.
	if c, err = NewFS("overlay", ""); err == nil {
		if c.SetFd("lowerdir+", int(a.Fd())) == nil && c.SetFd("lowerdir+", int(b.Fd())) == nil {
			f.LayerFds, f.LowerdirPlus, f.Overlay = true, true, true
			f.DetachedLayers = FsconfigCreate(c.fd) == nil
		}
		c.Close()
	}
	if f.OverlayNative && !f.LayerFds {
		if c, err = NewFS("overlay", ""); err == nil {
			f.LowerdirPlus = c.SetString("lowerdir+", aPath) == nil
			c.Close()
		}
	}
	if !f.LayerFds {
		// One lowerdir string of the two detached directories: creating
		// it works exactly when detached layers are allowed.
		if c, err = NewFS("overlay", ""); err == nil {
			err = c.SetString("lowerdir", aPath+":"+bPath)
			if err == nil {
				err = FsconfigCreate(c.fd)
			}
			f.DetachedLayers = err == nil
			f.Overlay = err == nil || errors.Is(err, unix.EINVAL)
			if err != nil && !errors.Is(err, unix.EINVAL) {
				fail("overlay create", c.wrap(err))
			}
			c.Close()
		}
	}
	if !f.Overlay {
		return
	}
	for _, o := range ProbedOverlayOptions {
		k, v, _ := strings.Cut(o, "=")
		ok := true
		if c, err := NewFS("overlay", ""); err == nil {
			ok = c.SetString(k, v) == nil
			c.Close()
		}
		f.OverlayOptions = append(f.OverlayOptions, OptionSupport{Option: o, Accepted: ok})
	}
}

// probeDirs makes a detached tmpfs with two empty directories and returns
// O_PATH fds of them. The mount fd stays open until closeAll: closing the
// last fd of a detached mount dissolves it, and directories of a dissolved
// mount are refused as layers on every kernel.
func probeDirs() (a, b *os.File, closeAll func(), err error) {
	c, err := NewFS("tmpfs", "ext-setup-root-probe")
	if err != nil {
		return nil, nil, nil, err
	}
	defer c.Close()
	t, err := c.Mount(unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, nil, nil, err
	}
	files := []*os.File{t}
	closeAll = func() {
		for _, f := range files {
			f.Close()
		}
	}
	for _, n := range []string{"a", "b"} {
		if err := sysx.Retry(func() error { return unix.Mkdirat(int(t.Fd()), n, 0o755) }); err != nil {
			closeAll()
			return nil, nil, nil, &os.PathError{Op: "mkdir", Path: "probe tmpfs/" + n, Err: err}
		}
		fd, err := sysx.RetryValue(func() (int, error) {
			return unix.Openat(int(t.Fd()), n, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			closeAll()
			return nil, nil, nil, &os.PathError{Op: "open", Path: "probe tmpfs/" + n, Err: err}
		}
		files = append(files, os.NewFile(uintptr(fd), "probe tmpfs/"+n))
	}
	return files[1], files[2], closeAll, nil
}

func procFdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// Expected returns the table a kernel of release v (major, minor) is
// expected to probe as, from the releases each feature appeared in. It
// documents the table (README), lets tests force an older kernel's
// fallbacks on a newer one, and is checked against Probe on the running
// kernel.
func Expected(v [2]int) *Features {
	at := func(maj, min int) bool { return v[0] > maj || (v[0] == maj && v[1] >= min) }
	f := &Features{
		Release:        fmt.Sprintf("%d.%d (expected)", v[0], v[1]),
		Version:        v,
		Overlay:        true,
		OverlayNative:  at(6, 5),
		LayerFds:       at(6, 13),
		LowerdirPlus:   at(6, 8),
		DetachedLayers: at(6, 15),
		DetachedTree:   at(6, 15),
		Beneath:        at(6, 5),
		MntIDUnique:    at(6, 8),
	}
	for _, o := range ProbedOverlayOptions {
		f.OverlayOptions = append(f.OverlayOptions, OptionSupport{Option: o, Accepted: true})
	}
	return f
}

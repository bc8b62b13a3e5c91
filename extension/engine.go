// Package extension merges systemd extension images (sysext for /usr and
// /opt, confext for /etc) the way systemd-sysext/systemd-confext 262 do, from
// discovery and release-file validation to the overlay and the
// .systemd-<class>/ metadata, and replaces an existing merge atomically.
// One engine serves both classes; config.Class carries what differs between them.
package extension

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// Options configure one call of the engine (Merge, Refresh, Unmerge,
// Status, List). The zero value of every field means systemd's default.
type Options struct {
	// Root is the tree to work on ("" or "/" for the running system,
	// /sysroot in the initrd). Everything is resolved inside it.
	Root string
	// Class is Sysext or Confext.
	Class *config.Class
	// Mutable is the mutable mode from the command line ("" = unset: the
	// class's environment variable, then systemd/<class>.conf decide).
	Mutable string
	// Force skips release validation (systemd's --force).
	Force bool
	// AlwaysRefresh makes Refresh replace the merge even if nothing changed.
	AlwaysRefresh bool
	// NoReload is accepted for compatibility; the engine never talks to
	// the service manager (systemd does not either with --root).
	NoReload bool
	// Noexec, if set, forces MOUNT_ATTR_NOEXEC on or off.
	Noexec *bool
	// Getenv reads systemd's and our environment variables (os.Getenv if nil).
	Getenv func(string) string
	// Log receives every side effect as an operation (oplog.Discard if nil).
	Log *oplog.Logger
	// Info receives systemd's user-facing lines ("Using extensions ...",
	// "Merged extensions into ..."); nil discards them.
	Info io.Writer
	// NoBeneath forces the unmount-then-mount fallback instead of
	// MOVE_MOUNT_BENEATH (--no-beneath; EXT_SETUP_ROOT_NO_BENEATH=1 only
	// in the -tags testhooks build).
	NoBeneath bool
	// Essential are image name patterns (path.Match syntax): if such an
	// image cannot be opened or validated, the whole call fails.
	Essential []string
	// Records, if set, keeps the meta layer of every merge this call
	// makes, for a later Rerecord in the same process.
	Records *Records
	// Handoff, if set, passes the images OpenStack opened to the Merge or
	// Refresh that follows in the same process (the pre stage's dedup,
	// then its merge): the merge adopts those unchanged since, instead of
	// opening and checking them again (handoff.go).
	Handoff *Handoff
	// Kernel is the feature table the engine follows (overlay layer
	// passing, MOVE_MOUNT_BENEATH); nil means the running kernel's, probed
	// once per process (mount.Kernel). Tests pass an older kernel's table
	// (mount.Expected) to run its fallbacks on a newer kernel.
	Kernel *mount.Features
	// ImagePolicy is the image policy from the command line (systemd's
	// --image-policy=) or the boot stages' configuration; nil lets
	// ImagePolicy= in the class's .conf, then the class default decide
	// (ResolveImagePolicy).
	ImagePolicy *image.Policy
}

// Skip is an image that was found but left out, with the logged reason.
type Skip struct {
	Name   string
	Reason string
}

// Result tells what a call did.
type Result struct {
	// Merged are the names of the images in the resulting merge, ascending
	// (the order of the confexts/extensions file).
	Merged []string
	// Skipped are images found but not merged.
	Skipped []Skip
	// Hierarchies are the resolved hierarchy paths (root included) that
	// were mounted, replaced or unmerged.
	Hierarchies []string
	// Unchanged is set when Refresh found nothing to do.
	Unchanged bool
	// Replaced is set when an existing merge was replaced.
	Replaced bool
	// Gap is set when a replacement had to unmount the old merge before
	// mounting the new one (no MOVE_MOUNT_BENEATH, or forced).
	Gap bool
	// Gaps counts the hierarchies replaced that way.
	Gaps int
	// Unmerged is set when the call removed a merge (unmerge, or a
	// refresh that found no images in mode "no").
	Unmerged bool
}

// engine is the state of one call.
type engine struct {
	opt      Options
	cls      *config.Class
	log      *oplog.Logger
	getenv   func(string) string
	rootPath string       // absolute, cleaned, resolved; "/" for the host
	root     *os.File     // directory fd of rootPath (a dup of rfs's)
	rfs      *rootfs.Root // rootPath for rootfs's reads and crash-safe changes
	hiers    []string
	initrd   bool
	info     io.Writer
	kern     *mount.Features
	// mi caches one parse of the mount table for this call; place()
	// drops it after changing the mounts.
	mi []mount.Info
	// policy is the resolved image policy (imagePolicy), once per call,
	// and where it came from.
	policy     *image.Policy
	policyFrom string
	// certs are the trusted verity.d certificates (trustedCerts), loaded
	// once per call.
	certs       []image.TrustedCert
	certWarns   []error
	certsLoaded bool
}

// mountinfo returns the mount table, parsed at most once between changes.
func (e *engine) mountinfo() ([]mount.Info, error) {
	if e.mi != nil {
		return e.mi, nil
	}
	mi, err := mount.ReadMountinfo()
	if err == nil {
		e.mi = mi
	}
	return mi, err
}

// newEngine validates opt and opens the root.
func newEngine(opt Options) (*engine, error) {
	if opt.Class == nil {
		return nil, errors.New("extension: no class given")
	}
	e := &engine{opt: opt, cls: opt.Class, log: opt.Log, getenv: opt.Getenv, info: opt.Info}
	if e.log == nil {
		e.log = oplog.Discard()
	}
	if e.getenv == nil {
		e.getenv = os.Getenv
	}
	if e.info == nil {
		e.info = io.Discard
	}
	e.kern = opt.Kernel
	if e.kern == nil {
		e.kern = mount.Kernel()
		kernelLogged.Do(func() { e.logKernel() })
	} else {
		e.logKernel()
	}
	// Below the minimum nothing is attempted: one clear error before
	// any change.
	if err := mount.CheckKernel(e.kern); err != nil {
		return nil, err
	}
	rp := opt.Root
	if rp == "" {
		rp = "/"
	}
	abs, err := filepath.Abs(rp)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	// One lookup of the root path: e.root is a duplicate of rootfs's
	// directory fd, so both always name the same directory even if
	// something is mounted over the path meanwhile.
	if e.rfs, err = rootfs.Open(abs); err != nil {
		return nil, err
	}
	fd, err := unix.FcntlInt(uintptr(e.rfs.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		e.rfs.Close()
		return nil, &os.PathError{Op: "dup root fd", Path: abs, Err: err}
	}
	e.root = os.NewFile(uintptr(fd), abs)
	e.rootPath = abs
	e.hiers = opt.Class.Hierarchies
	if v := e.getenv(opt.Class.HierarchiesEnv); v != "" {
		e.hiers = nil
		for _, h := range strings.Split(v, ":") {
			if h != "" {
				e.hiers = append(e.hiers, path.Clean("/"+h))
			}
		}
	}
	if e.initrd, err = sysx.IsInitrd(int(e.root.Fd())); err != nil {
		e.close()
		return nil, &os.PathError{Op: "stat", Path: path.Join(abs, sysx.InitrdRelease), Err: err}
	}
	return e, nil
}

// kernelLogged makes the probed table appear once per process.
var kernelLogged sync.Once

func (e *engine) logKernel() {
	e.log.Debugf("kernel features: %s", e.kern)
	if fb := e.kern.Fallbacks(); fb != "" {
		e.log.Debugf("kernel fallbacks in use: %s", fb)
	}
}

func (e *engine) close() {
	if e.root != nil {
		e.root.Close()
	}
	if e.rfs != nil {
		e.rfs.Close()
	}
}

// display returns the host-visible path of an in-root path, for messages.
func (e *engine) display(p string) string {
	if e.rootPath == "/" {
		return path.Clean("/" + p)
	}
	return e.rootPath + path.Clean("/"+p)
}

// infof prints one of systemd's user-facing lines.
func (e *engine) infof(format string, args ...any) {
	fmt.Fprintf(e.info, format+"\n", args...)
}

// noBeneath reports whether the gap-ful fallback is forced: by
// Options.NoBeneath (--no-beneath), or, in the -tags testhooks build only,
// by EXT_SETUP_ROOT_NO_BENEATH=1 (envNoBeneath). A variable alone must not
// switch a production boot onto the path with a gap.
func (e *engine) noBeneath() bool {
	return e.opt.NoBeneath || envNoBeneath(e.getenv)
}

// mutableMode resolves the effective mutable mode with systemd's
// precedence (command line, environment, systemd/<class>.conf under the
// root).
func (e *engine) mutableMode() (string, error) {
	cfg, err := config.LoadConfig(e.rfs, e.cls)
	if err != nil {
		return "", err
	}
	for _, w := range cfg.Warnings {
		e.log.Warnf("%s", w)
	}
	m, _, warns, err := config.ResolveMutableMode(e.cls, e.opt.Mutable, e.opt.Mutable != "", e.getenv, cfg)
	for _, w := range warns {
		e.log.Warnf("%s", w)
	}
	if err != nil {
		return "", err
	}
	return m.String(), nil
}

// hierName is systemd's hierarchy_as_single_path_component: "/usr" ->
// "usr", "/foo/bar" -> "foo.bar".
func hierName(h string) string { return config.HierarchyDirName(h) }

// stateDir is where our own state lives (outside the root).
func stateDir() string { return paths.StateDir }

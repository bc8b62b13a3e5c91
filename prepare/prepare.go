package prepare

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// Options configure one Run.
type Options struct {
	// Root is the target root (/sysroot in the initrd).
	Root   string
	Config Config
	// DryRun computes the plan (Result.Actions) and changes nothing.
	DryRun bool
	Log    *oplog.Logger
	// LookPath and Command run external programs (systemd-tmpfiles);
	// exec.LookPath and exec.CommandContext unless a test sets them.
	LookPath func(string) (string, error)
	Command  func(ctx context.Context, name string, args ...string) *exec.Cmd
	// Confexts opens the confext images the merge that follows will
	// stack over /etc, as it will (the boot stages pass package
	// extension's OpenStack); the dedup removes only what the merged /etc
	// then shows unchanged. Nil: no extension engine, the first of
	// Dedup.DefaultsDirs is the one layer below /etc.
	Confexts func() (*Stack, error)
	// NoDedup, when set, says why no merge will show the vendor defaults
	// (systemd.confext=0, ...): the dedup then removes nothing.
	NoDedup string
}

// Action is one change, done or (in a dry run) planned.
type Action struct {
	Duty string `json:"duty"`
	// Op is remove, rmdir, copy or run.
	Op   string `json:"op"`
	Path string `json:"path"`
	Why  string `json:"why,omitempty"`
}

func (a Action) String() string {
	s := fmt.Sprintf("%-9s %-6s %q", a.Duty, a.Op, a.Path)
	if a.Why != "" {
		s += " (" + a.Why + ")"
	}
	return s
}

// Result is what a Run did or, in a dry run, would do.
type Result struct {
	Actions []Action `json:"actions"`
	// Counts per duty of removed entries (files, links, directories).
	Reset, Whiteouts, Dedup int
	MachineID               bool // the blank machine-id was removed
	OEM                     int  // entries copied
	// Tmpfiles is what became of the tmpfiles run: "ran", "not present",
	// "failed", "nothing to do", "planned" or "" when disabled.
	Tmpfiles string
	// BelowMerge is set when /etc carried an overlay and the work was done
	// on the directory underneath it.
	BelowMerge bool
	// Problems are what could not be done; none of them stops the boot.
	Problems []string `json:"problems,omitempty"`
}

// Changed reports whether anything was (or would be) changed.
func (r *Result) Changed() bool { return len(r.Actions) > 0 }

// Summary is the short form for the stage summary line.
func (r *Result) Summary() string {
	s := fmt.Sprintf("%d reset, %d whiteouts, %d deduplicated", r.Reset, r.Whiteouts, r.Dedup)
	if r.MachineID {
		s += ", blank machine-id removed"
	}
	if r.OEM > 0 {
		s += fmt.Sprintf(", %d oem copied", r.OEM)
	}
	if r.Tmpfiles != "" {
		s += ", tmpfiles " + r.Tmpfiles
	}
	if len(r.Problems) > 0 {
		s += fmt.Sprintf(", %d problems", len(r.Problems))
	}
	return s
}

// String renders the plan for `plan` and dry runs.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "prepare: %s\n", r.Summary())
	if r.BelowMerge {
		b.WriteString("  /etc is merged: working on the directory underneath the overlay\n")
	}
	for _, a := range r.Actions {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	return b.String()
}

// faultHook, when set by a test, is called before every side effect with
// a name for it (crash tests kill the process there). It is nil in every
// production build: nothing outside this package's tests can set it.
var faultHook func(step string)

func fault(step string) {
	if faultHook != nil {
		faultHook(step)
	}
}

// run is the state of one Run.
type run struct {
	o    *Options
	log  *oplog.Logger
	res  *Result
	live int // the root as mounted, with submounts (for /usr)
	base int // the root's own file system without submounts (the clone)
	// etc is the directory to work on for /etc: the clone's etc, i.e. the
	// real /etc under a confext overlay; etcPath is its in-root path.
	etc     int
	etcPath string
	// in is the root that in-root paths named by the configuration
	// (the flag files, the whiteout list's entries, the machine-id) are
	// resolved in, absolute symlinks included: the root's own file
	// system (the clone), where /etc is the real directory, or the live
	// root when /etc is a separate, non-overlay mount. Not owned.
	in int
	// mounts are the in-root paths of mount points below the root (other
	// than a merged /etc), which the reset neither enters nor removes.
	mounts map[string]bool
	// planned are the in-root paths a dry run has planned to remove.
	planned map[string]bool
}

func (r *run) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.res.Problems = append(r.res.Problems, msg)
	r.log.Warnf("prepare: %s", msg)
}

func (r *run) act(a Action) {
	r.res.Actions = append(r.res.Actions, a)
	if r.o.DryRun {
		r.log.Infof("dry run: prepare would %s %s (%s)", a.Op, r.display(a.Path), a.Why)
	} else {
		r.log.Infof("prepare: %s %s (%s)", a.Op, r.display(a.Path), a.Why)
	}
}

func (r *run) display(p string) string {
	return strings.TrimSuffix(r.o.Root, "/") + p
}

// Run does every enabled duty, in Flatcar's order: reset, whiteouts,
// tmpfiles, machine-id, dedup, oem. A duty that fails is recorded in
// Result.Problems and the next one runs; the error is non-nil only when
// the root itself could not be opened.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = oplog.Discard()
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.Command == nil {
		o.Command = exec.CommandContext
	}
	res := &Result{}
	c := &o.Config
	if !c.Enabled {
		return res, nil
	}
	if err := c.Validate(); err != nil {
		return res, err
	}
	r := &run{o: &o, log: o.Log, res: res, live: -1, base: -1, etc: -1, in: -1}
	defer r.close()
	if err := r.open(); err != nil {
		return res, err
	}
	steps := []struct {
		on   bool
		name string
		f    func(context.Context) error
	}{
		{c.Reset.Enabled, "selective OS reset", r.reset},
		{c.Whiteouts.Enabled, "whiteout repair", r.whiteouts},
		{c.Tmpfiles.Enabled, "early tmpfiles", r.tmpfiles},
		{c.MachineID.Enabled, "blank machine-id", r.machineID},
		{c.Dedup.Enabled, "/etc dedup", r.dedup},
		{c.OEM.Enabled, "PXE OEM copy", r.oem},
	}
	for _, s := range steps {
		if !s.on {
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		start := time.Now()
		if err := s.f(ctx); err != nil {
			r.problem("%s: %v", s.name, err)
		}
		r.log.Debugf("prepare: %s took %s", s.name, time.Since(start))
	}
	return res, nil
}

func (r *run) close() {
	for _, fd := range []int{r.etc, r.base, r.live} {
		closeFd(fd)
	}
	r.etc, r.base, r.live, r.in = -1, -1, -1, -1
}

// open opens the root, its non-recursive clone and the /etc to work on.
func (r *run) open() error {
	fd, err := openat(unix.AT_FDCWD, r.o.Root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return pathErr("open root", r.o.Root, err)
	}
	r.live = fd
	r.etcPath = path.Clean(r.o.Config.Dedup.Etc)
	if r.etcPath == "." || !r.o.Config.Dedup.Enabled {
		r.etcPath = "/etc"
	}
	// The clone shows the root's own file system only: a merged /etc is
	// the real directory there, and nothing mounted below the root is
	// entered by the reset.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// The *os.File owns (and closes) the duplicate only.
	liveFile := os.NewFile(uintptr(dup), r.o.Root)
	clone, cerr := mount.BindDetached(liveFile, false)
	liveFile.Close()
	if cerr == nil {
		// open_tree gives an O_PATH fd; a readable one of the same
		// directory lists it. The detached mount lives as long as an fd
		// refers to it.
		r.base, err = openat(int(clone.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		clone.Close()
		if err != nil {
			return pathErr("open clone of", r.o.Root, err)
		}
	}
	etcOverlay, etcMount, err := r.etcState()
	if err != nil {
		return err
	}
	r.mounts, err = mountPoints(r.live, r.etcPath, etcOverlay)
	if err != nil {
		return err
	}
	switch {
	case cerr != nil && etcMount:
		return fmt.Errorf("%s is a mount point and the root's file system cannot be cloned to reach the directory underneath: %w", r.display(r.etcPath), cerr)
	case cerr != nil:
		// No clone (not privileged, or a kernel without open_tree): with
		// /etc not mounted over, the live root is the same tree; only the
		// reset, which must not enter mount points, checks them itself.
		r.log.Debugf("prepare: no detached clone of %s (%v); working on it directly", r.o.Root, cerr)
		r.base, err = unix.FcntlInt(uintptr(r.live), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return err
		}
	}
	r.in = r.base
	if etcMount && !etcOverlay {
		r.in = r.live
	}
	switch {
	case etcOverlay:
		r.res.BelowMerge = true
		r.log.Infof("prepare: %s is merged; working on the directory underneath the overlay", r.display(r.etcPath))
		r.etc, err = openIn(r.base, r.etcPath, unix.O_RDONLY|unix.O_DIRECTORY, true)
	case etcMount:
		// A separate, non-overlay file system on /etc: that is /etc.
		r.etc, err = openIn(r.live, r.etcPath, unix.O_RDONLY|unix.O_DIRECTORY, true)
	default:
		r.etc, err = openIn(r.base, r.etcPath, unix.O_RDONLY|unix.O_DIRECTORY, true)
	}
	if errors.Is(err, unix.ENOENT) {
		r.etc, err = -1, nil
	}
	if err != nil {
		return pathErr("open", r.display(r.etcPath), err)
	}
	return nil
}

// etcState tells whether the live /etc is a mount point, and an overlay.
func (r *run) etcState() (overlay, mounted bool, err error) {
	fd, err := openIn(r.live, r.etcPath, unix.O_PATH|unix.O_DIRECTORY, true)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return false, false, nil
	}
	if err != nil {
		return false, false, pathErr("open", r.display(r.etcPath), err)
	}
	defer closeFd(fd)
	id, _, err := mount.StatxMountID(fd)
	if err != nil {
		return false, false, err
	}
	rid, _, err := mount.StatxMountID(r.live)
	if err != nil {
		return false, false, err
	}
	if id == rid {
		return false, false, nil
	}
	var sfs unix.Statfs_t
	if err := retry(func() error { return unix.Fstatfs(fd, &sfs) }); err != nil {
		return false, true, pathErr("statfs", r.display(r.etcPath), err)
	}
	return sfs.Type == unix.OVERLAYFS_SUPER_MAGIC, true, nil
}

// mountPoints returns the in-root paths of the mounts below the root,
// from this process's mountinfo, except a merged etc (whose underlying
// directory the duties work on).
func mountPoints(live int, etcPath string, etcOverlay bool) (map[string]bool, error) {
	real := fdName(live)
	f, err := os.Open(paths.ProcMountinfo)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	infos, err := mount.ParseMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", paths.ProcMountinfo, err)
	}
	out := map[string]bool{}
	prefix := strings.TrimSuffix(real, "/") + "/"
	for _, m := range infos {
		if !strings.HasPrefix(m.Mountpoint, prefix) {
			continue
		}
		p := "/" + strings.TrimPrefix(m.Mountpoint, prefix)
		if p == etcPath && etcOverlay {
			continue
		}
		out[p] = true
	}
	return out, nil
}

// openParent opens the parent directory of the in-root path p, resolved
// in the root (r.in: symlinks, absolute ones included, stay inside it and
// an /etc path reaches the real /etc), and returns it with p's last
// element, which is not followed.
func (r *run) openParent(p string) (int, string, error) {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return -1, "", unix.EINVAL
	}
	d, base := path.Split(rel)
	fd, err := openIn(r.in, d, unix.O_RDONLY|unix.O_DIRECTORY, false)
	return fd, base, err
}

// removeName unlinks base in dir after checking that it still is the
// inode (dev, ino, ctime) that was inspected.
func removeName(dir int, base string, was *unix.Stat_t, flags int) error {
	var now unix.Stat_t
	if err := fstatat(dir, base, &now); err != nil {
		return err
	}
	if now.Dev != was.Dev || now.Ino != was.Ino || now.Ctim != was.Ctim {
		return errChanged
	}
	return unlinkat(dir, base, flags)
}

var errChanged = errors.New("changed while being inspected; kept")

func joinErrs(errs []error) error { return errors.Join(errs...) }

// Package systemd262 runs the real systemd-confext 262 from the Debian forky
// chroot built by scripts/prepare-systemd262.sh, next to our ext-setup-root,
// on the same test roots: the differential tests of issue 2 and the confext
// benchmarks in bench/ use it.
//
// The chroot is prepared the way /work/shared/docs/systemd-262-golden/README.md
// describes, inside the caller's PRIVATE mount namespace (tests: TestMain
// calls testutil.MainInMountNS; bench: the driver re-executes itself in a new
// mount namespace): the chroot is bound onto itself and made shared, /proc,
// /sys and /dev are bound in and /run is a fresh tmpfs. Test roots live under
// /mnt inside the chroot (a tmpfs of ours), so `--root=/mnt/...` works for
// systemd and the same directory is reachable from the host side for our
// binary; the cached chroot itself is never written to.
package systemd262

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RootEnv names the chroot directory; unset, DefaultChroot() is used if it
// exists.
const RootEnv = "EXT_SETUP_ROOT_SYSTEMD262_ROOT"

// SkipMessage is what systemd 262 prints when refresh finds nothing changed.
const SkipMessage = "Skipping extension refresh because no change was found"

// DefaultChroot returns $EXT_SETUP_ROOT_CACHE/systemd262-root (cache default
// /var/cache/ext-setup-root), where scripts/prepare-systemd262.sh puts it.
func DefaultChroot() string {
	cache := os.Getenv("EXT_SETUP_ROOT_CACHE")
	if cache == "" {
		cache = "/var/cache/ext-setup-root"
	}
	return filepath.Join(cache, "systemd262-root")
}

// ChrootDir returns the chroot to use: $EXT_SETUP_ROOT_SYSTEMD262_ROOT if
// set, else DefaultChroot() if it exists, else "".
func ChrootDir() string {
	if d := os.Getenv(RootEnv); d != "" {
		return d
	}
	if st, err := os.Stat(DefaultChroot()); err == nil && st.IsDir() {
		return DefaultChroot()
	}
	return ""
}

// Env is a chroot prepared for running systemd-confext in this mount
// namespace.
type Env struct {
	// Chroot is the host path of the chroot.
	Chroot string
	// Work is the host path of the scratch tmpfs at <chroot>/mnt.
	Work string
	// Version is the first line of `systemd-confext --version`.
	Version string
}

var (
	setupOnce sync.Once
	setupEnv  *Env
	setupErr  error
)

// Setup prepares the chroot once per process (further calls return the same
// Env). The caller must already be in a private mount namespace: the binds
// made here must not reach the host.
func Setup(chroot string) (*Env, error) {
	setupOnce.Do(func() { setupEnv, setupErr = setup(chroot) })
	if setupErr == nil && setupEnv.Chroot != chroot {
		return nil, fmt.Errorf("systemd262: already set up for %s, not %s", setupEnv.Chroot, chroot)
	}
	return setupEnv, setupErr
}

// mnt wraps mount(2) with EINTR retry and a descriptive error.
func mnt(src, dst, fstype string, flags uintptr, data string) error {
	for {
		err := unix.Mount(src, dst, fstype, flags, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: fmt.Sprintf("mount %s (%s, %#x)", src, fstype, flags), Path: dst, Err: err}
		}
		return nil
	}
}

func setup(chroot string) (*Env, error) {
	chroot, err := filepath.Abs(chroot)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(chroot, "usr/bin/systemd-confext")); err != nil {
		return nil, fmt.Errorf("systemd262: %s has no systemd-confext (run scripts/prepare-systemd262.sh): %w", chroot, err)
	}
	// Refuse to run in the host's mount namespace: everything below would
	// otherwise be visible on the host.
	self, _ := os.Readlink("/proc/self/ns/mnt")
	init, _ := os.Readlink("/proc/1/ns/mnt")
	if self == "" || self == init {
		return nil, errors.New("systemd262: not in a private mount namespace (refusing to bind the chroot on the host)")
	}
	// systemd's image code needs the chroot's / to be a mount point.
	if err := mnt(chroot, chroot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, err
	}
	// Shared, because systemd-confext merges in a child mount namespace and
	// relies on propagation back to ours. This namespace is private to the
	// test process, so the peer group never includes a host mount.
	if err := mnt("", chroot, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return nil, err
	}
	for _, d := range []string{"proc", "sys", "dev"} {
		if err := mnt("/"+d, filepath.Join(chroot, d), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return nil, err
		}
	}
	if err := mnt("tmpfs", filepath.Join(chroot, "run"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return nil, err
	}
	work := filepath.Join(chroot, "mnt")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	if err := mnt("tmpfs", work, "tmpfs", 0, "mode=0755"); err != nil {
		return nil, err
	}
	// Shared as well: overlays that systemd mounts below it in its child
	// namespace must propagate back.
	if err := mnt("", work, "", unix.MS_SHARED, ""); err != nil {
		return nil, err
	}
	e := &Env{Chroot: chroot, Work: work}
	r, err := e.Confext(nil, "--version")
	if err != nil {
		return nil, fmt.Errorf("systemd262: systemd-confext --version: %v\n%s", err, r.Output)
	}
	e.Version = strings.SplitN(r.Output, "\n", 2)[0]
	if !strings.HasPrefix(e.Version, "systemd 262") {
		return nil, fmt.Errorf("systemd262: want systemd 262, chroot has %q (%s)", e.Version, r)
	}
	return e, nil
}

// Root is a test root reachable from both sides.
type Root struct {
	// Host is the path in this process's view (for our binary, os calls).
	Host string
	// In is the same directory as seen inside the chroot (for --root=).
	In string
	// Slot is the directory under Env.Work holding the root; a filesystem
	// for the root may be mounted on it (see Env.NewRoot).
	Slot string
	// OurEnv is the environment for our binary on this root: its state dir
	// (EXT_SETUP_ROOT_STATE_DIR, normally /run/ext-setup-root) is private to
	// the root, so no state leaks between roots, runs or onto the host.
	OurEnv []string
}

// NewRoot creates an empty directory for a test root below /mnt of the
// chroot. If fs is not "", it is a mounted filesystem (for example a
// testutil.LoopFS ext4) that is bound onto the slot first, so the root lives
// on it; otherwise the root lives on the scratch tmpfs. The bind is shared
// so systemd's merges propagate. cleanup detaches everything mounted at or
// below the slot.
//
// Each slot has a name no other caller can hold (os.MkdirTemp): Setup's
// tmpfs at /mnt is private to this process's mount namespace, but a
// fixed or counted name (the former t1, t2, ...) would collide the moment
// two runs share a Work (two Envs, a namespace entered twice, a tool
// reusing one); a slot is never a shared path.
func (e *Env) NewRoot(fs string) (r Root, cleanup func(), err error) {
	slot, err := os.MkdirTemp(e.Work, "t")
	if err != nil {
		return Root{}, nil, err
	}
	if err := os.Chmod(slot, 0o755); err != nil {
		return Root{}, nil, err
	}
	cleanup = func() {}
	if fs != "" {
		if err := mnt(fs, slot, "", unix.MS_BIND, ""); err != nil {
			return Root{}, nil, err
		}
		if err := mnt("", slot, "", unix.MS_SHARED, ""); err != nil {
			return Root{}, nil, err
		}
		cleanup = func() {
			// Merged hierarchies below the slot go first, then the slot.
			UnmountBelow(slot)
			unix.Unmount(slot, unix.MNT_DETACH)
		}
	} else {
		cleanup = func() { UnmountBelow(slot) }
	}
	host := filepath.Join(slot, "root")
	if err := os.Mkdir(host, 0o755); err != nil {
		cleanup()
		return Root{}, nil, err
	}
	state := filepath.Join(slot, "ext-setup-root-state")
	if err := os.Mkdir(state, 0o700); err != nil {
		cleanup()
		return Root{}, nil, err
	}
	in := "/" + strings.TrimPrefix(strings.TrimPrefix(host, e.Chroot), "/")
	return Root{Host: host, In: in, Slot: slot, OurEnv: []string{"EXT_SETUP_ROOT_STATE_DIR=" + state}}, cleanup, nil
}

// UnmountBelow detaches every mount strictly below dir (deepest first).
func UnmountBelow(dir string) {
	mounts, err := ReadMountinfo()
	if err != nil {
		return
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if strings.HasPrefix(m.MountPoint, dir+"/") {
			unix.Unmount(m.MountPoint, unix.MNT_DETACH)
		}
	}
}

// Result is the outcome of one command.
type Result struct {
	Args     []string
	Output   string // stdout and stderr interleaved
	Stdout   string
	ExitCode int
	Elapsed  time.Duration
}

// String shows the command, its exit code and output, for test failures.
func (r Result) String() string {
	return fmt.Sprintf("%s -> exit %d\n%s", strings.Join(r.Args, " "), r.ExitCode, r.Output)
}

// cleanEnv is the environment of both tools: no inherited SYSTEMD_* or
// EXT_SETUP_ROOT_* settings (they would change the mutable mode), plus extra.
func cleanEnv(extra []string) []string {
	return append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"SYSTEMD_COLORS=0",
		"SYSTEMD_PAGER=cat",
	}, extra...)
}

// runCmd runs cmd, collecting output, exit status and time. A non-zero exit
// is not an error; failing to start is. (No peak RSS here: Go starts
// children with vfork semantics, so a child's ru_maxrss includes this
// process's RSS; bench/confext measures RSS through GNU time instead.)
func runCmd(cmd *exec.Cmd) (Result, error) {
	var all, out bytes.Buffer
	var mu sync.Mutex
	// One lock for both streams: exec copies them in two goroutines, and a
	// bytes.Buffer written concurrently (its ReadFrom keeps a stale length
	// while blocked) loses output.
	cmd.Stdout = &lockedWriter{mu: &mu, w: []*bytes.Buffer{&all, &out}}
	cmd.Stderr = &lockedWriter{mu: &mu, w: []*bytes.Buffer{&all}}
	start := time.Now()
	err := cmd.Run()
	r := Result{Args: cmd.Args, Elapsed: time.Since(start)}
	r.Output, r.Stdout = all.String(), out.String()
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = nil
	}
	return r, err
}

// Confext runs systemd-confext inside the chroot with args; env adds
// variables (for example "SYSTEMD_LOG_LEVEL=debug").
func (e *Env) Confext(env []string, args ...string) (Result, error) {
	cmd := exec.Command("/usr/bin/systemd-confext", args...)
	cmd.Dir = "/"
	cmd.Env = cleanEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: e.Chroot}
	r, err := runCmd(cmd)
	r.Args = append([]string{"systemd-confext"}, args...)
	return r, err
}

// Run runs argv (argv[0] looked up in the chroot's PATH) inside the
// chroot; env adds variables, for example SYSTEMD_PROC_CMDLINE= to give
// systemd's own code a kernel command line.
func (e *Env) Run(env []string, argv ...string) (Result, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	// exec.Command resolved argv[0] on the host; inside the chroot the
	// same standard directories are searched by the path below.
	cmd.Path = ""
	for _, d := range []string{"/usr/bin", "/usr/sbin", "/bin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(e.Chroot, d, argv[0])); err == nil && !strings.Contains(argv[0], "/") {
			cmd.Path = d + "/" + argv[0]
			break
		}
	}
	if strings.HasPrefix(argv[0], "/") {
		cmd.Path = argv[0]
	}
	if cmd.Path == "" {
		return Result{Args: argv}, fmt.Errorf("systemd262: %s not found in the chroot", argv[0])
	}
	cmd.Err = nil
	cmd.Dir = "/"
	cmd.Env = cleanEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: e.Chroot}
	r, err := runCmd(cmd)
	r.Args = argv
	return r, err
}

// Ours runs our binary (host side) with args, for example
// Ours(bin, nil, "confext", "--root="+r.Host, "merge").
func Ours(bin string, env []string, args ...string) (Result, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = "/"
	cmd.Env = cleanEnv(env)
	r, err := runCmd(cmd)
	r.Args = append([]string{"ext-setup-root"}, args...)
	return r, err
}

// lockedWriter writes to every buffer under a shared lock.
type lockedWriter struct {
	mu *sync.Mutex
	w  []*bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.w {
		b.Write(p)
	}
	return len(p), nil
}

package extension

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// Hierarchy locks.
//
// A merge, refresh or unmerge reads a hierarchy's state, decides and then
// changes its mounts; two such calls at once broke the merge (both
// replaced the same old overlay, two overlays ended stacked sharing one
// work dir). Each call therefore holds an exclusive BSD lock (flock(2))
// per hierarchy for its whole read-decide-modify.
//
// systemd-sysext/-confext 262 take no lock at all: the binary imports no
// flock, lockf, fcntl-lock or image lock helper (only stdio's flockfile),
// so there is no lock of theirs to share. Our lock excludes our own calls;
// against a concurrent systemd-<class> call the re-check of the top mount by
// mount id right before the attach (replace.go) is what keeps us from
// stacking over, or detaching, a merge we did not inspect.
//
// Where: <paths.StateDir>/locks/<maj>.<min>-<ino>-<hierarchy>.lock, named by
// the device and inode of the root directory and the hierarchy. The state
// dir lives in /run, which systemd moves to /sysroot/run at switch-root,
// and the root directory of /sysroot is the booted "/": the initrd's and
// the booted system's calls name the same lock file. A flock dies with its
// holder, so a crash never leaves a stale lock.

// hierLocks are the locks one call holds.
type hierLocks struct {
	files []*os.File
	// waited is set when another holder had to be waited for.
	waited bool
}

func (l *hierLocks) release() {
	if l == nil {
		return
	}
	for _, f := range l.files {
		f.Close() // closing the last fd releases the flock
	}
	l.files = nil
}

// lockPath is the lock file of hierarchy h of this engine's root.
func (e *engine) lockPath(h string) (string, error) {
	st, err := statFd(e.root)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%d.%d-%d-%s.lock", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, hierName(h))
	return filepath.Join(paths.StateDir, "locks", name), nil
}

// lockPoll bounds the sleep between two attempts while waiting.
const lockPoll = 20 * time.Millisecond

// lockHierarchies takes the lock of every hierarchy of the class, in name
// order (so two calls over overlapping hierarchy lists cannot deadlock),
// waiting for a holder until ctx ends.
func (e *engine) lockHierarchies(ctx context.Context) (*hierLocks, error) {
	hs := append([]string(nil), e.hiers...)
	sort.Strings(hs)
	l := &hierLocks{}
	ok := false
	defer func() {
		if !ok {
			l.release()
		}
	}()
	seen := map[string]bool{}
	for _, h := range hs {
		p, err := e.lockPath(h)
		if err != nil {
			return nil, err
		}
		if seen[p] {
			continue
		}
		seen[p] = true
		// A lock that cannot be had (no writable state dir, no lock
		// support) must not cost a boot: the call goes on unlocked, as
		// systemd's always does, and says so.
		f, err := openLockFile(p)
		if err != nil {
			e.log.Warnf("cannot lock %s, going on without the lock: %v", e.display(h), err)
			continue
		}
		l.files = append(l.files, f)
		waited, err := flockWait(ctx, f)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("lock %s (%s): %w", e.display(h), p, ctx.Err())
		}
		if err != nil {
			e.log.Warnf("cannot lock %s, going on without the lock: %v", e.display(h), err)
			continue
		}
		if waited {
			l.waited = true
			e.log.Infof("waited for another call holding the lock of %s (%s)", e.display(h), p)
		}
	}
	ok = true
	return l, nil
}

// openLockFile opens (creating it and its directory) the lock file p.
func openLockFile(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

// flockWait takes an exclusive flock on f, polling while someone else
// holds it so that ctx can end the wait; it reports whether it waited.
func flockWait(ctx context.Context, f *os.File) (bool, error) {
	waited := false
	delay := time.Millisecond
	for {
		err := sysx.Retry(func() error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) })
		if err == nil {
			return waited, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return waited, &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
		waited = true
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-time.After(delay):
		}
		if delay *= 2; delay > lockPoll {
			delay = lockPoll
		}
	}
}

// topMountIDs returns the mount id of what each hierarchy shows now (0
// when missing), to tell after a wait whether the holder changed it.
func (e *engine) topMountIDs() map[string]uint64 {
	ids := map[string]uint64{}
	for _, h := range e.hiers {
		f, err := openDirIn(e.root, h)
		if err != nil {
			continue
		}
		if id, err := sysx.MountID(int(f.Fd()), ""); err == nil {
			ids[h] = id
		}
		f.Close()
	}
	return ids
}

// sameIDs reports whether two topMountIDs results are equal.
func sameIDs(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

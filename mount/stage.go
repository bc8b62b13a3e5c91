package mount

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"

	"github.com/ext-setup-root/ext-setup-root/paths"
)

// staging is a private tmpfs in the current mount namespace where
// detached layer mounts are attached while an overlay is created, for
// kernels before 6.15: there overlayfs takes a private clone of each layer
// (clone_private_mount), which refuses mounts outside the caller's
// namespace, so a layer on a detached mount fails with EINVAL. The overlay
// keeps its own clones, so the staging tree is detached right after.
type staging struct {
	dir  string
	root *os.File
}

// stagingParents are tried in order for the staging directory; /run is a
// tmpfs both in the initrd and on the booted system.
var stagingParents = []string{paths.Run, os.TempDir()}

// stageDetached attaches the mounts of the layers that are not in the
// current mount namespace (detached ones) below a new private staging
// tmpfs; it returns nil when there are none. The layer files keep naming
// the same directories, now on attached mounts, until release.
//
// The staging tmpfs is attached under a directory of /run, which in an
// initrd or a booted system is usually shared: the empty tmpfs propagates
// to the peers for the moment before it is made private, and its detach
// propagates back; the layer mounts below it never propagate.
func stageDetached(layers []Layer) (st *staging, err error) {
	type det struct {
		id  uint64
		top *os.File
	}
	var ids []uint64
	seen := map[uint64]bool{}
	for _, l := range layers {
		if l.File == nil {
			continue
		}
		var sx unix.Statx_t
		if err := statx(int(l.File.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &sx); err != nil {
			return nil, &os.PathError{Op: "statx", Path: l.File.Name(), Err: err}
		}
		runtime.KeepAlive(l.File)
		if !seen[sx.Mnt_id] {
			seen[sx.Mnt_id] = true
			ids = append(ids, sx.Mnt_id)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	infos, err := ReadMountinfo()
	if err != nil {
		return nil, err
	}
	attached := map[uint64]bool{}
	for _, in := range infos {
		attached[uint64(in.ID)] = true
	}
	var todo []uint64
	for _, id := range ids {
		if !attached[id] {
			todo = append(todo, id)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	st, err = newStaging()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.release()
			st = nil
		}
	}()
	done := map[uint64]bool{}
	for _, l := range layers {
		if l.File == nil {
			continue
		}
		var sx unix.Statx_t
		if err := statx(int(l.File.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &sx); err != nil {
			return nil, &os.PathError{Op: "statx", Path: l.File.Name(), Err: err}
		}
		if attached[sx.Mnt_id] || done[sx.Mnt_id] {
			continue
		}
		top, err := topOfDetached(l.File)
		if err != nil {
			return nil, err
		}
		name := strconv.Itoa(len(done))
		err = sysx.Retry(func() error { return unix.Mkdirat(int(st.root.Fd()), name, 0o700) })
		if err == nil {
			err = MoveMount(int(top.Fd()), "", int(st.root.Fd()), name, unix.MOVE_MOUNT_F_EMPTY_PATH)
		}
		top.Close()
		if err != nil {
			return nil, fmt.Errorf("attach detached layer %s to staging %s: %w", l.File.Name(), st.dir, err)
		}
		done[sx.Mnt_id] = true
	}
	runtime.KeepAlive(layers)
	return st, nil
}

// topOfDetached returns an O_PATH fd of the root of the topmost mount of
// the detached tree f is on, found by walking ".." until it stays put (a
// detached mount's root is its own parent).
func topOfDetached(f *os.File) (*os.File, error) {
	fd, err := sysx.RetryValue(func() (int, error) {
		return unix.Open(procFdPath(f), unix.O_PATH|unix.O_CLOEXEC|unix.O_DIRECTORY, 0)
	})
	runtime.KeepAlive(f)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: f.Name(), Err: err}
	}
	for i := 0; i < 4096; i++ {
		var self, parent unix.Statx_t
		mask := unix.STATX_MNT_ID | unix.STATX_INO
		if err := statx(fd, "", unix.AT_EMPTY_PATH, mask, &self); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "statx", Path: f.Name(), Err: err}
		}
		if err := statx(fd, "..", 0, mask, &parent); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "statx", Path: f.Name() + "/..", Err: err}
		}
		if self.Mnt_id == parent.Mnt_id && self.Ino == parent.Ino && self.Dev_major == parent.Dev_major && self.Dev_minor == parent.Dev_minor {
			return os.NewFile(uintptr(fd), "top of "+f.Name()), nil
		}
		up, err := sysx.RetryValue(func() (int, error) { return unix.Openat(fd, "..", unix.O_PATH|unix.O_CLOEXEC|unix.O_DIRECTORY, 0) })
		unix.Close(fd)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: f.Name() + "/..", Err: err}
		}
		fd = up
	}
	unix.Close(fd)
	return nil, &os.PathError{Op: "find mount root", Path: f.Name(), Err: errors.New("more than 4096 levels")}
}

// newStaging makes the private staging tmpfs.
func newStaging() (*staging, error) {
	var dir string
	var err error
	for _, p := range stagingParents {
		if dir, err = os.MkdirTemp(p, ".ext-setup-root-layers-"); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create staging directory for detached layers: %w", err)
	}
	c, err := NewFS("tmpfs", "ext-setup-root-layers")
	if err == nil {
		err = c.SetString("mode", "0700")
	}
	var t *os.File
	if err == nil {
		t, err = c.Mount(unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC)
	}
	if c != nil {
		c.Close()
	}
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	st := &staging{dir: dir, root: t}
	d, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		err = Attach(t, d, false)
		d.Close()
	}
	if err != nil {
		t.Close()
		os.Remove(dir)
		return nil, err
	}
	if err := SetAttr(t, 0, 0, unix.MS_PRIVATE, false); err != nil {
		st.release()
		return nil, err
	}
	return st, nil
}

// release detaches the staging tree (with the layer mounts attached to
// it) and removes its directory. Errors are not fatal: the overlay holds
// its own clones; a leftover is an empty directory under /run.
func (st *staging) release() {
	if st == nil {
		return
	}
	if st.root != nil {
		_ = UnmountFd(st.root, unix.MNT_DETACH)
		st.root.Close()
	}
	_ = os.Remove(st.dir)
}

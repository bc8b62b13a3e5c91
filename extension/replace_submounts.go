package extension

import (
	"errors"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// submount is a mount found under a merged hierarchy (for example a bind
// of /etc/machine-id) that must survive the replacement or removal of the
// merge, as systemd keeps them (PR 41875). clone is a detached recursive
// copy made before the merge goes away; moving the original is not an
// option because a mount under a shared parent cannot be moved.
type submount struct {
	rel   string // path below the hierarchy
	clone *os.File
}

// collectSubmounts clones the direct child mounts of the merge at s (its
// own .systemd-<C> bind excluded). It reads mountinfo once, and only when
// the merge has children at all (checked by the mount ids in it).
func (e *engine) collectSubmounts(s *hierState) ([]submount, error) {
	mntID, err := sysx.MountID(int(s.top.Fd()), "")
	if err != nil {
		return nil, &os.PathError{Op: "statx", Path: s.display, Err: err}
	}
	infos, err := e.mountinfo()
	if err != nil {
		return nil, err
	}
	meta := path.Join(s.display, e.cls.DotDir)
	var out []submount
	for _, mi := range infos {
		if uint64(mi.Parent) != mntID || mi.Mountpoint == meta || !strings.HasPrefix(mi.Mountpoint, s.display+"/") {
			continue
		}
		rel := strings.TrimPrefix(mi.Mountpoint, s.display+"/")
		src, err := rootfs.OpenIn(s.top, rel, unix.O_PATH|unix.O_NOFOLLOW)
		if err != nil {
			closeSubmounts(out)
			return nil, err
		}
		clone, err := mount.BindDetached(src, true)
		src.Close()
		if err != nil {
			closeSubmounts(out)
			return nil, err
		}
		out = append(out, submount{rel: rel, clone: clone})
	}
	return out, nil
}

// attachSubmounts puts the clones back below base (the new merge, or the
// bare hierarchy after an unmerge). A mount point that no longer exists
// there is reported and skipped: its mount cannot be kept.
func (e *engine) attachSubmounts(base *os.File, display string, subs []submount) error {
	var errs []error
	for _, sm := range subs {
		op := e.log.Op("keep sub-mount %s/%s", display, sm.rel)
		tgt, err := rootfs.OpenIn(base, sm.rel, unix.O_PATH|unix.O_NOFOLLOW)
		if err == nil {
			err = mount.Attach(sm.clone, tgt, false)
			tgt.Close()
		}
		if op.Finish(err) != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func closeSubmounts(subs []submount) {
	for _, sm := range subs {
		sm.clone.Close()
	}
}

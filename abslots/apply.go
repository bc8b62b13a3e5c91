package abslots

import (
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/ext-setup-root/ext-setup-root/oplog"
	"golang.org/x/sys/unix"
)

// Apply executes the plan's actions in order through root. Every action is
// idempotent: it first looks at what is there and does nothing if the
// result is already in place, so a rerun after a crash at any point reaches
// the plan's final state. Failures of best-effort steps (moving the previous
// image, placing on a full store, migration deletes) are logged and the run
// goes on, as in Flatcar; failures to set links are returned, joined.
//
// It returns how many actions changed something on disk (in a dry run, how
// many would be tried).
func Apply(root FS, cfg *Config, p *Plan, log *oplog.Logger, dryRun bool) (int, error) {
	if dryRun {
		for _, a := range p.Actions {
			log.Noticef("dry run: would %s", a.describe())
		}
		return len(p.Actions), nil
	}
	cleanTemps(root, p.tempDirs, log)
	var errs []error
	changed := 0
	for _, a := range p.Actions {
		al := &alog{Logger: log}
		if err := applyOne(root, a, al); err != nil {
			errs = append(errs, err)
		}
		if al.ops > 0 {
			changed++
		}
	}
	return changed, errors.Join(errs...)
}

// alog counts the operations an action starts: every disk change is logged
// as an oplog operation, so the count is the number of changes tried.
type alog struct {
	*oplog.Logger
	ops int
}

// Op logs and counts one operation.
func (a *alog) Op(format string, args ...any) *oplog.Op {
	a.ops++
	return a.Logger.Op(format, args...)
}

// cleanTemps removes temporary files a crashed run left in the directories
// abslots writes to (found while gathering facts), before anything else, so
// they never accumulate and never count as images.
func cleanTemps(root FS, dirs []string, log *oplog.Logger) {
	for _, d := range dirs {
		op := log.Op("remove temporary files of an interrupted run in %s", d)
		if op.Finish(root.CleanTemps(d)) != nil {
			log.Warnf("temporary files in %s stay", d)
		}
	}
}

func (a Action) describe() string {
	switch a.Op {
	case OpMove:
		return fmt.Sprintf("move %s -> %s (%s)", a.Src, a.Dst, a.Reason)
	case OpPlace:
		return fmt.Sprintf("place %s -> %v (%s)", a.Src, a.Dsts, a.Reason)
	case OpDedup:
		return fmt.Sprintf("remove %s (%s)", a.Path, a.Reason)
	case OpSymlink:
		return fmt.Sprintf("symlink %s -> %v (%s)", a.Path, a.Targets, a.Reason)
	case OpRelink:
		return fmt.Sprintf("symlink %s -> %s (%s)", a.Path, a.Target, a.Reason)
	default:
		return fmt.Sprintf("%s %s (%s)", a.Op, a.Path, a.Reason)
	}
}

func isRegular(root FS, p string) (fs.FileInfo, bool) {
	fi, err := root.Stat(p)
	return fi, err == nil && fi.Mode().IsRegular()
}

func applyOne(root FS, a Action, log *alog) error {
	switch a.Op {
	case OpMove:
		if _, ok := isRegular(root, a.Src); !ok {
			log.Debugf("%s already moved", a.Src)
			return nil
		}
		op := log.Op("move %s -> %s", a.Src, a.Dst)
		err := root.MkdirAll(path.Dir(a.Dst), 0o755)
		if err == nil {
			err = root.Move(a.Src, a.Dst)
		}
		if op.Finish(err) != nil {
			// Flatcar goes on when the previous image cannot be moved.
			log.Warnf("previous image %s stays where it is", a.Src)
		}
		return nil
	case OpPlace:
		return applyPlace(root, a, log)
	case OpDedup:
		src, ok1 := isRegular(root, a.Path)
		dst, ok2 := isRegular(root, a.Dst)
		if !ok1 {
			return nil
		}
		if !ok2 || src.Size() != dst.Size() {
			log.Warnf("%s and %s differ; keeping both", a.Path, a.Dst)
			return nil
		}
		// Same name and size is not proof: compare the bytes before
		// removing anything (an image is read once, only in this rare
		// after-crash case).
		same, err := root.SameContent(a.Path, a.Dst)
		if err != nil {
			log.Warnf("cannot compare %s with %s, keeping both: %v", a.Path, a.Dst, err)
			return nil
		}
		if !same {
			log.Warnf("%s and %s differ in content; keeping both", a.Path, a.Dst)
			return nil
		}
		op := log.Op("remove %s (leftover copy of %s)", a.Path, a.Dst)
		return op.Finish(ignoreNotExist(root.Remove(a.Path)))
	case OpSymlink:
		target := ""
		for _, t := range a.Targets {
			if _, ok := isRegular(root, t); ok {
				target = t
				break
			}
		}
		if target == "" {
			log.Warnf("none of %v exists; removing stale link %s", a.Targets, a.Path)
			return unlinkIfSymlink(root, a.Path, log)
		}
		return symlink(root, target, a.Path, log)
	case OpRelink:
		return symlink(root, a.Target, a.Path, log)
	case OpUnlink:
		return unlinkIfSymlink(root, a.Path, log)
	case OpDelete:
		if _, err := root.Lstat(a.Path); err != nil {
			return nil
		}
		op := log.Op("rm -rf %s (%s)", a.Path, a.Reason)
		if op.Finish(root.RemoveAll(a.Path)) != nil {
			log.Warnf("migration: %s could not be removed; going on", a.Path)
		}
		return nil
	case OpClearFlag:
		if _, err := root.Lstat(a.Path); err != nil {
			return nil
		}
		op := log.Op("rm %s (%s)", a.Path, a.Reason)
		return op.Finish(ignoreNotExist(root.Remove(a.Path)))
	}
	return fmt.Errorf("abslots: unknown action %q", a.Op)
}

// applyPlace moves the image to the first preferred store that has room.
// A destination that already holds the image (a rerun after the rename)
// counts as done; a failed move leaves no partial destination.
func applyPlace(root FS, a Action, log *alog) error {
	if _, ok := isRegular(root, a.Src); !ok {
		for _, d := range a.Dsts {
			if _, ok := isRegular(root, d); ok {
				log.Debugf("%s already placed at %s", a.Src, d)
				return nil
			}
		}
		log.Warnf("%s vanished before it could be placed", a.Src)
		return nil
	}
	for _, d := range a.Dsts {
		op := log.Op("move %s -> %s", a.Src, d)
		err := root.MkdirAll(path.Dir(d), 0o755)
		if err == nil {
			err = root.Move(a.Src, d)
		}
		if op.Finish(err) == nil {
			return nil
		}
		if _, ok := isRegular(root, a.Src); ok {
			// The source is intact, so whatever is at d is not the
			// only copy; make sure no partial file remains.
			if rerr := ignoreNotExist(root.Remove(d)); rerr != nil {
				log.Warnf("removing partial %s: %v", d, rerr)
			}
		}
		if errors.Is(err, unix.ENOSPC) {
			log.Noticef("%s is full; keeping %s", path.Dir(d), a.Src)
		} else {
			log.Warnf("could not move %s to %s; keeping it", a.Src, d)
		}
	}
	return nil
}

func symlink(root FS, target, name string, log *alog) error {
	if cur, err := root.Readlink(name); err == nil && cur == target {
		log.Debugf("%s -> %s unchanged", name, target)
		return nil
	}
	op := log.Op("symlink %s -> %s", name, target)
	err := root.MkdirAll(path.Dir(name), 0o755)
	if err == nil {
		err = root.SymlinkAtomic(target, name)
	}
	return op.Finish(err)
}

func unlinkIfSymlink(root FS, name string, log *alog) error {
	fi, err := root.Lstat(name)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return nil
	}
	op := log.Op("rm %s", name)
	return op.Finish(ignoreNotExist(root.Remove(name)))
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

package prepare

import (
	"context"
	"errors"
	"path"
	"sort"

	"golang.org/x/sys/unix"
)

// treeWalk is the directory walk the reset and the dedup share: entries
// depth first, directory fd by directory fd (never through a symlink),
// each handed to a visitor that reports whether it is gone (or, in a dry
// run, would be). Errors are collected (at most maxWalkErrs) and the walk
// goes on with the next entry.
type treeWalk struct {
	ctx    context.Context
	sorted bool // visit in name order (else directory order, as find)
	errs   []error
}

const maxWalkErrs = 20

func (w *treeWalk) fail(err error) {
	if err != nil && len(w.errs) < maxWalkErrs {
		w.errs = append(w.errs, err)
	}
}

// err is every collected error, nil when there is none.
func (w *treeWalk) err() error { return errors.Join(w.errs...) }

// dir visits the entries of directory fd (in-root path p) and reports
// whether every one of them is gone, i.e. the directory is (or would be)
// empty.
func (w *treeWalk) dir(fd int, p, display string, visit func(name, p string) bool) bool {
	names, err := readNames(fd)
	if err != nil {
		w.fail(pathErr("readdir", display, err))
		return false
	}
	if w.sorted {
		sort.Strings(names)
	}
	left := len(names)
	for _, name := range names {
		if err := w.ctx.Err(); err != nil {
			w.fail(err)
			return false
		}
		if visit(name, path.Join(p, name)) {
			left--
		}
	}
	return left == 0
}

// removeEntry is the one removal of the duties: it unlinks name in dir
// (in-root path a.Path) after checking that it still is the inode that was
// inspected (removeName), records the action (counted in *count when
// count is not nil) and reports whether the entry is gone (or, in a dry
// run, planned to go). A directory that is not empty
// or busy (a mount point) is kept without an error; a name already gone
// counts as gone without an action; a path a dry run's reset has planned
// already is gone.
func (r *run) removeEntry(a Action, dir int, name string, st *unix.Stat_t, count *int) (bool, error) {
	if r.planned[a.Path] {
		return true, nil
	}
	flags := 0
	if a.Op == "rmdir" {
		flags = unix.AT_REMOVEDIR
	}
	if !r.o.DryRun {
		fault(a.Duty + " " + a.Path)
		err := removeName(dir, name, st, flags)
		switch {
		case errors.Is(err, unix.ENOENT):
			return true, nil
		case errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST), errors.Is(err, unix.EBUSY):
			return false, nil
		case err != nil:
			return false, pathErr(a.Op, r.display(a.Path), err)
		}
	}
	r.planRemoved(a.Path)
	r.act(a)
	if count != nil {
		*count++
	}
	return true, nil
}

// removeOp is "rmdir" for a directory, else "remove".
func removeOp(st *unix.Stat_t) string {
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return "rmdir"
	}
	return "remove"
}

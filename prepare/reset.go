package prepare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// reset does the selective OS reset that flatcar-reset prepares: when the
// flag file is not empty, its content (trailing newlines dropped) is a
// POSIX extended regex (CompileERE) of the paths to keep, matched against
// the whole in-root path ("/etc/ssh/ssh_host_rsa_key"). Every other entry
// of the root's own file system goes, depth first: files, symlinks and
// other non-directories are removed, directories only when empty (so a
// kept entry keeps its parents). Never removed nor entered: "/", the
// Protect paths (/usr) and mount points (the OEM partition, a separate
// /var), except a merged /etc, whose real directory underneath is reset.
// A symlink that resolves (inside the root) to a directory is kept, as in
// the script, where rmdir refuses it. Then the machine-id is removed and,
// last, the flag file: a crash before that redoes the whole reset.
func (r *run) reset(ctx context.Context) error {
	c := &r.o.Config.Reset
	b, err := r.readSmall(c.FlagFile, false, c.MaxSize)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	expr := string(bytes.TrimRight(b, "\n"))
	if bytes.IndexByte(b, 0) >= 0 {
		return fmt.Errorf("%s: NUL byte in the regex; reset not done", r.display(c.FlagFile))
	}
	re, err := CompileERE(expr)
	if err != nil {
		return fmt.Errorf("%s: %w; reset not done", r.display(c.FlagFile), err)
	}
	op := r.log.Op("selective OS reset of %s, keeping paths matching %q", r.o.Root, expr)
	w := &resetter{r: r, re: re, flag: path.Clean(c.FlagFile), protect: map[string]bool{"/": true}, walk: treeWalk{ctx: ctx}}
	for _, p := range c.Protect {
		w.protect[path.Clean(p)] = true
	}
	var st unix.Stat_t
	if err := fstat(r.base, &st); err != nil {
		return op.Finish(err)
	}
	w.dev = st.Dev
	w.dir(r.base, "/")
	if err := w.walk.err(); err != nil {
		// Keep the flag so the next boot tries again.
		return op.Finish(err)
	}
	if err := w.r.recreateEtc(); err != nil {
		return op.Finish(err)
	}
	if c.MachineID != "" {
		if err := r.removeFile("reset", c.MachineID, "the reset makes the next boot a first boot"); err != nil {
			return op.Finish(err)
		}
	}
	if !r.o.DryRun {
		if err := syncfs(r.base); err != nil {
			return op.Finish(pathErr("syncfs", r.o.Root, err))
		}
	}
	if err := r.removeFile("reset", c.FlagFile, "reset done"); err != nil {
		return op.Finish(err)
	}
	return op.Finish(nil)
}

type resetter struct {
	r       *run
	re      *regexp.Regexp
	flag    string
	dev     uint64
	protect map[string]bool
	walk    treeWalk
}

// dir resets the entries of directory fd (in-root path p), in directory
// order as find does, and reports whether it is left empty.
func (w *resetter) dir(fd int, p string) bool {
	return w.walk.dir(fd, p, w.r.display(p), func(name, sub string) bool {
		return w.entry(fd, sub, name)
	})
}

func (w *resetter) entry(dir int, p, name string) bool {
	if w.protect[p] || w.r.mounts[p] || p == w.flag {
		return false
	}
	var st unix.Stat_t
	if err := fstatat(dir, name, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return true
		}
		w.walk.fail(pathErr("stat", w.r.display(p), err))
		return false
	}
	keep := w.re.MatchString(p)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return w.subdir(dir, p, name, &st, keep)
	case unix.S_IFLNK:
		if keep {
			return false
		}
		// The script's rmdir refuses a symlink to a directory: kept. The
		// target is resolved in the root as mounted (/bin -> usr/bin).
		if t, err := openIn(w.r.live, p, unix.O_PATH|unix.O_DIRECTORY, false); err == nil {
			target := strings.TrimPrefix(fdName(t), strings.TrimSuffix(fdName(w.r.live), "/"))
			closeFd(t)
			// In a dry run, a directory the walk would have removed by now
			// is gone too.
			if !w.r.planned[target] {
				return false
			}
		}
		return w.remove(dir, p, name, &st)
	default:
		if keep {
			return false
		}
		return w.remove(dir, p, name, &st)
	}
}

// subdir resets a directory's entries, then removes it when it is left
// empty and not kept. A directory on another file system is not entered.
func (w *resetter) subdir(dir int, p, name string, st *unix.Stat_t, keep bool) bool {
	if st.Dev != w.dev {
		return false
	}
	fd := w.r.etc // the /etc being worked on (the real one under a merge)
	if p != w.r.etcPath || w.r.etc < 0 {
		var err error
		fd, err = openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			w.walk.fail(pathErr("open", w.r.display(p), err))
			return false
		}
		defer closeFd(fd)
	}
	if empty := w.dir(fd, p); keep || !empty {
		return false
	}
	var now unix.Stat_t
	if fstat(fd, &now) != nil {
		return false
	}
	return w.remove(dir, p, name, &now)
}

func (w *resetter) remove(dir int, p, name string, st *unix.Stat_t) bool {
	gone, err := w.r.removeEntry(Action{Duty: "reset", Op: removeOp(st), Path: p, Why: "not matched by the keep regex"}, dir, name, st, &w.r.res.Reset)
	w.walk.fail(err)
	return gone
}

// planRemoved notes an in-root path that a dry run plans to remove.
func (r *run) planRemoved(p string) {
	if r.o.DryRun {
		if r.planned == nil {
			r.planned = map[string]bool{}
		}
		r.planned[p] = true
	}
}

// removeFile removes the in-root name p (any type but a directory; a
// symlink itself), as rm -f: a missing one is no error.
func (r *run) removeFile(duty, p, why string) error {
	dir, base, err := r.openParent(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return pathErr("open parent of", r.display(p), err)
	}
	defer closeFd(dir)
	var st unix.Stat_t
	if err := fstatat(dir, base, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return pathErr("stat", r.display(p), err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return pathErr("remove", r.display(p), unix.EISDIR)
	}
	_, err = r.removeEntry(Action{Duty: duty, Op: "remove", Path: path.Clean(p), Why: why}, dir, base, &st, nil)
	return err
}

// recreateEtc makes /etc again when the reset removed it (the script's
// mkdir -p before the dedup), and reopens it.
func (r *run) recreateEtc() error {
	if r.etc >= 0 {
		var st unix.Stat_t
		if err := fstat(r.etc, &st); err == nil && st.Nlink > 0 {
			return nil
		}
	}
	rel := strings.TrimPrefix(r.etcPath, "/")
	if !r.o.DryRun {
		fault("mkdir " + r.etcPath)
		err := retry(func() error { return unix.Mkdirat(r.base, rel, 0o755) })
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return pathErr("mkdir", r.display(r.etcPath), err)
		}
		fd, err := openIn(r.base, rel, unix.O_RDONLY|unix.O_DIRECTORY, true)
		if err != nil {
			return pathErr("open", r.display(r.etcPath), err)
		}
		closeFd(r.etc)
		r.etc = fd
	}
	return nil
}

package prepare

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// maxListSize bounds the vendor's whiteout list.
const maxListSize = 1 << 20

// whiteouts removes user whiteouts that would hide a default the boot
// needs: a 0:0 character device (what overlayfs leaves in the upper dir
// when a lower file is deleted) at a path of the vendor's list, and any
// character device at the Always paths (the user databases must be
// regular files before tmpfiles and Ignition write them). Only the entry
// itself is looked at (no symlink is followed, unlike the script's test -c).
func (r *run) whiteouts(ctx context.Context) error {
	c := &r.o.Config.Whiteouts
	var list []string
	if c.ListFile != "" {
		b, err := r.readSmall(c.ListFile, true, maxListSize)
		switch {
		case errors.Is(err, unix.ENOENT):
			r.log.Infof("prepare: no whiteout list %s", r.display(c.ListFile))
		case err != nil:
			return err
		default:
			list = parseList(b)
		}
	}
	var errs []error
	for _, p := range list {
		if err := r.whiteout(p, true, "vendor list "+c.ListFile); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range c.Always {
		if err := r.whiteout(p, false, "must be a regular file"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// parseList returns the absolute paths of a list, one a line; other lines
// (empty, comments, relative paths, which the script never matches
// either) are ignored.
func parseList(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), maxListSize)
	for sc.Scan() {
		l := sc.Text()
		if len(l) > 1 && l[0] == '/' && path.Clean(l) != "/" {
			out = append(out, l)
		}
	}
	return out
}

// whiteout removes p if it is a character device (a 0:0 one with zeroOnly).
func (r *run) whiteout(p string, zeroOnly bool, why string) error {
	dir, base, err := r.openParent(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EINVAL) {
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
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || (zeroOnly && st.Rdev != 0) {
		return nil
	}
	a := Action{Duty: "whiteout", Op: "remove", Path: path.Clean(p), Why: fmt.Sprintf("character device %d:%d; %s", unix.Major(st.Rdev), unix.Minor(st.Rdev), why)}
	_, err = r.removeEntry(a, dir, base, &st, &r.res.Whiteouts)
	return err
}

// errTooBig is returned by readSmall for a file over its limit.
var errTooBig = errors.New("file too large")

// readSmall reads the in-root file p, resolved in the root (r.in; with
// mounted, in the root as mounted, for vendor files in /usr), refusing
// files larger than max.
func (r *run) readSmall(p string, mounted bool, max int64) ([]byte, error) {
	root := r.in
	if mounted {
		root = r.live
	}
	// The module's one bounded reader (rootfs.ReadRegular: O_PATH, fstat
	// regular, reopen O_NONBLOCK, at most max bytes), on a duplicate of
	// the root fd: the *os.File closes it.
	dfd, err := unix.FcntlInt(uintptr(root), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, pathErr("dup", r.display("/"), err)
	}
	dir := os.NewFile(uintptr(dfd), strings.TrimSuffix(r.o.Root, "/"))
	defer dir.Close()
	b, err := rootfs.ReadRegular(dir, p, max, rootfs.FollowInRoot)
	var rule *rootfs.FileRuleError
	if errors.As(err, &rule) && rule.Type == 0 {
		return nil, fmt.Errorf("%w: %v", errTooBig, err)
	}
	return b, err
}

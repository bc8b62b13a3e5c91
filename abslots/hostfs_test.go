package abslots

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// hostFS is a test double for FS over a plain directory. It joins paths
// (no in-root resolution), which is acceptable only for fixtures the test
// itself wrote; the real FS is *rootfs.Root.
type hostFS struct {
	dir    string
	noRoom map[string]bool // in-root dirs that fail moves with ENOSPC
	// eio lists in-root directories whose listing fails with EIO (an
	// unreadable store or link directory).
	eio map[string]bool
}

func (h hostFS) p(n string) string { return filepath.Join(h.dir, n) }

func (h hostFS) Lstat(n string) (fs.FileInfo, error) { return os.Lstat(h.p(n)) }
func (h hostFS) Stat(n string) (fs.FileInfo, error) {
	r, err := h.Resolve(n)
	if err != nil {
		return nil, err
	}
	return os.Stat(h.p(r))
}
func (h hostFS) Readlink(n string) (string, error) { return os.Readlink(h.p(n)) }
func (h hostFS) ReadFile(n string) ([]byte, error) { return os.ReadFile(h.p(n)) }
func (h hostFS) ReadDir(n string) ([]fs.DirEntry, error) {
	if h.eio[path.Clean(n)] {
		return nil, &fs.PathError{Op: "readdirent", Path: n, Err: syscall.EIO}
	}
	return os.ReadDir(h.p(n))
}

// Resolve follows links with the fixture dir as root (absolute targets
// are taken inside it).
func (h hostFS) Resolve(n string) (string, error) {
	cur := path.Clean("/" + n)
	for i := 0; i < 40; i++ {
		t, err := os.Readlink(h.p(cur))
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) && errors.Is(err, syscall.EINVAL) {
				return cur, nil
			}
			if errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
			return cur, nil
		}
		if path.IsAbs(t) {
			cur = path.Clean(t)
		} else {
			cur = path.Join(path.Dir(cur), t)
		}
	}
	return "", syscall.ELOOP
}
func (h hostFS) MkdirAll(n string, m fs.FileMode) error { return os.MkdirAll(h.p(n), m) }
func (h hostFS) SymlinkAtomic(t, n string) error {
	tmp := h.p(n) + ".tmp-link"
	os.Remove(tmp)
	if err := os.Symlink(t, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, h.p(n))
}
func (h hostFS) Remove(n string) error    { return os.Remove(h.p(n)) }
func (h hostFS) RemoveAll(n string) error { return os.RemoveAll(h.p(n)) }
func (h hostFS) Move(s, d string) error {
	if h.noRoom[path.Dir(d)] {
		return &fs.PathError{Op: "write", Path: d, Err: syscall.ENOSPC}
	}
	in, err := os.Open(h.p(s))
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := h.p(d) + ".tmp-move"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	out.Close()
	if err := os.Rename(tmp, h.p(d)); err != nil {
		return err
	}
	return os.Remove(h.p(s))
}
func (h hostFS) SameContent(a, b string) (bool, error) {
	ab, err := os.ReadFile(h.p(a))
	if err != nil {
		return false, err
	}
	bb, err := os.ReadFile(h.p(b))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil && bytes.Equal(ab, bb), err
}

func (h hostFS) CleanTemps(d string) error {
	ents, err := os.ReadDir(h.p(d))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp-move") || strings.HasSuffix(e.Name(), ".tmp-link") {
			os.Remove(filepath.Join(h.p(d), e.Name()))
		}
	}
	return nil
}

func (h hostFS) WriteFileAtomic(n string, b []byte, m fs.FileMode) error {
	tmp := h.p(n) + ".tmp-move"
	if err := os.WriteFile(tmp, b, m); err != nil {
		return err
	}
	return os.Rename(tmp, h.p(n))
}

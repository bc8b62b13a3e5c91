package abslots

import (
	"io/fs"
	"path"
	"time"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
	"golang.org/x/sys/unix"
)

func init() {
	openRoot = func(p string) (FS, error) {
		r, err := rootfs.Open(p)
		if err != nil {
			return nil, err
		}
		return RootFS{r}, nil
	}
}

// RootFS adapts *rootfs.Root (which returns raw stat structures) to FS.
type RootFS struct{ *rootfs.Root }

// Lstat implements FS.
func (r RootFS) Lstat(name string) (fs.FileInfo, error) {
	st, err := r.Root.Lstat(name)
	if err != nil {
		return nil, err
	}
	return statInfo{path.Base(name), st}, nil
}

// Stat implements FS.
func (r RootFS) Stat(name string) (fs.FileInfo, error) {
	st, err := r.Root.Stat(name)
	if err != nil {
		return nil, err
	}
	return statInfo{path.Base(name), st}, nil
}

// Move and CleanTemps are rootfs's own (crash-safe cross-filesystem move,
// removal of a crashed run's temps), promoted from *rootfs.Root.

// isTempName reports rootfs's temporary names.
func isTempName(name string) bool { return rootfs.IsTempName(name) }

// statInfo is an fs.FileInfo over a unix.Stat_t.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s statInfo) Name() string { return s.name }
func (s statInfo) Size() int64  { return s.st.Size }
func (s statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	}
	return m
}
func (s statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s statInfo) Sys() any           { return &s.st }

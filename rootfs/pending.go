package rootfs

import (
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// Pending is a new file being written under its temp name in the
// directory where it will live, for writers that stream (a download) and
// must check the content before it gets its name: Commit gives it the
// name crash-safely (chmod, fsync, rename, fsync of the directory);
// Abort removes it. Until Commit the final name does not exist or keeps
// its old content, and a crash leaves only the temp, which CleanTemps
// recognises.
type Pending struct {
	// File is the temp, open for reading and writing.
	File *os.File
	r    *Root
	dir  *os.File
	tmp  string
	base string
	name string
	done bool
}

// CreatePending creates the temp of name (clearing one a crashed run
// left) and returns it open read-write.
func (r *Root) CreatePending(name string) (*Pending, error) {
	parent, base, err := r.openParent(name)
	if err != nil {
		return nil, err
	}
	tmp := tempName(base)
	if err := r.removeStale(parent, tmp, r.display(name)); err != nil {
		parent.Close()
		return nil, err
	}
	if err := step("create temp for " + name); err != nil {
		parent.Close()
		return nil, r.errPath("create temp for", name, err)
	}
	fd, err := openat(int(parent.Fd()), tmp, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		parent.Close()
		return nil, r.errPath("create temp for", name, err)
	}
	return &Pending{File: os.NewFile(uintptr(fd), r.display(path.Join(path.Dir(name), tmp))), r: r, dir: parent, tmp: tmp, base: base, name: name}, nil
}

// TempPath is the temp's in-root path (to open it like any file of the
// root, e.g. to check an image before it is named).
func (p *Pending) TempPath() string { return path.Join(path.Dir(p.name), p.tmp) }

// Commit sets mode, fsyncs the temp, renames it to the final name and
// fsyncs the directory. On error the temp is removed.
func (p *Pending) Commit(mode os.FileMode) error {
	if p.done {
		return p.r.errPath("commit", p.name, unix.EINVAL)
	}
	p.done = true
	defer p.dir.Close()
	err := p.r.fillTemp(p.File, p.name, func() error { return nil }, uint32(mode.Perm()), -1, -1)
	if err == nil {
		err = p.r.commitTemp(p.dir, p.tmp, p.base, p.name)
	}
	if err != nil {
		unlinkat(int(p.dir.Fd()), p.tmp, 0)
	}
	return err
}

// Abort closes and removes the temp; after Commit it does nothing, so it
// can be deferred.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.done = true
	p.File.Close()
	unlinkat(int(p.dir.Fd()), p.tmp, 0)
	p.dir.Close()
}

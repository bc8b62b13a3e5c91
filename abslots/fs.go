package abslots

import "io/fs"

// FS is the view of the target root that abslots reads and changes. Every
// name is an absolute path inside the root, resolved by file descriptor
// (openat2 RESOLVE_IN_ROOT) so that links in the root can never lead
// outside it. *rootfs.Root implements it; tests may substitute fakes.
type FS interface {
	Lstat(name string) (fs.FileInfo, error)
	Stat(name string) (fs.FileInfo, error)
	Readlink(name string) (string, error)
	ReadFile(name string) ([]byte, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	// Resolve returns the in-root absolute path name resolves to.
	Resolve(name string) (string, error)
	MkdirAll(name string, perm fs.FileMode) error
	// SymlinkAtomic makes name a link to target, replacing an existing
	// link atomically (temporary link, then rename).
	SymlinkAtomic(target, name string) error
	Remove(name string) error
	RemoveAll(name string) error
	// Move moves a file, across filesystems by copy, fsync, rename, fsync
	// of the directory and unlink of the source; on ENOSPC no partial file
	// remains and the error matches unix.ENOSPC.
	Move(src, dst string) error
	// SameContent reports whether a and b hold the same bytes, so that a
	// leftover copy is only removed when it really is one.
	SameContent(a, b string) (bool, error)
	// CleanTemps removes temporary files a crashed run left in dir.
	CleanTemps(dir string) error
	// WriteFileAtomic writes a file crash-safely (temp, fsync, rename,
	// fsync of the directory); for fetchers.
	WriteFileAtomic(name string, data []byte, perm fs.FileMode) error
}

package record

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// DirFingerprint returns a hash of the metadata of every inode in a
// directory image's tree, so that refresh notices in-place edits that
// leave systemd's origin record unchanged (systemd issue 41523: a
// directory image is identified only by its top directory's handle, mount
// ID and birth time, with mtime deliberately 0). The origin file stays
// exactly systemd's; callers keep the fingerprint elsewhere (under
// paths.StateDir).
//
// Per entry it hashes the path relative to the image, type and mode, uid,
// gid, size, mtime and ctime in nanoseconds, inode number and device
// number. ctime is what makes it reliable: every content write, chmod,
// chown, rename into place or link change sets it, and unlike mtime it
// cannot be set back from user space. Contents are not read: hashing data
// would cost I/O proportional to the image size on every boot, while
// metadata costs one getdents per directory and one fstatat per entry.
// What it cannot see: a change made within the same timestamp tick as the
// previous one, before the fingerprint was taken, with an identical size
// (the tick is nanoseconds on ext4, btrfs, xfs and tmpfs), and changes on
// file systems that do not maintain ctime. Mount points inside the image
// are recorded but not descended into, like systemd's read-only bind mount
// of the image (which is not recursive).
func DirFingerprint(root *rootfs.Root, img discover.Image) (string, error) {
	if img.Type != discover.ImageDirectory {
		return "", fmt.Errorf("fingerprint %s: not a directory image", img.Path)
	}
	dir, err := root.Open(img.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer dir.Close()
	return FingerprintTree(dir)
}

// FingerprintTree is DirFingerprint for an already opened directory.
func FingerprintTree(dir *os.File) (string, error) {
	var st unix.Stat_t
	if err := fstat(int(dir.Fd()), &st); err != nil {
		return "", &os.PathError{Op: "fstat", Path: dir.Name(), Err: err}
	}
	h := sha256.New()
	writeStat(h, ".", &st)
	if err := fingerprintDir(h, dir, ".", st.Dev); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeStat(h hash.Hash, rel string, st *unix.Stat_t) {
	var b [8 * 11]byte
	for i, v := range []uint64{uint64(st.Mode), uint64(st.Uid), uint64(st.Gid), uint64(st.Size),
		uint64(st.Mtim.Sec), uint64(st.Mtim.Nsec), uint64(st.Ctim.Sec), uint64(st.Ctim.Nsec),
		st.Ino, st.Rdev, uint64(st.Nlink)} { // Nlink is uint32 on arm64
		binary.LittleEndian.PutUint64(b[i*8:], v)
	}
	h.Write([]byte(rel))
	h.Write([]byte{0})
	h.Write(b[:])
}

func fingerprintDir(h hash.Hash, dir *os.File, rel string, dev uint64) error {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("fingerprint: read %s: %w", dir.Name(), err)
	}
	sort.Strings(names)
	for _, n := range names {
		var st unix.Stat_t
		err := fstatat(int(dir.Fd()), n, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == unix.ENOENT {
			continue // removed while we walk; the parent's ctime changed anyway
		}
		if err != nil {
			return &os.PathError{Op: "fstatat", Path: dir.Name() + "/" + n, Err: err}
		}
		child := rel + "/" + n
		writeStat(h, child, &st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Dev != dev {
			continue
		}
		fd, err := openat(int(dir.Fd()), n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "openat", Path: dir.Name() + "/" + n, Err: err}
		}
		sub := os.NewFile(uintptr(fd), dir.Name()+"/"+n)
		err = fingerprintDir(h, sub, child, dev)
		sub.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

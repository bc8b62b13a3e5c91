package extension

// This file holds stand-ins for pieces owned by B1 that had not landed
// yet (discovery, the per-image origin identity and DirFingerprint), written to the API
// described for them, so that the merge engine can be built and tested
// before they land. Every identifier is prefixed b1 so that nothing clashes
// with B1's files; each is replaced by B1's function when it lands.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// b1ImageType is the kind of a discovered image.
type b1ImageType int

const (
	b1Directory b1ImageType = iota
	b1Raw
	b1Block
)

func (t b1ImageType) String() string {
	switch t {
	case b1Raw:
		return "raw"
	case b1Block:
		return "block"
	}
	return "directory"
}

// b1Image is a discovered image: Name (without .raw and class suffix),
// FileName (the entry name, shown in "Using extensions"), Path (the
// resolved in-root path, root prefix NOT included).
type b1Image struct {
	Name     string
	FileName string
	Type     b1ImageType
	Path     string
}

// b1Discover lists the class's images under root in systemd's search
// order; the first directory holding a name wins.
func b1Discover(root *os.File, c *Class, initrd bool) ([]b1Image, error) {
	dirs := c.SearchPaths
	if initrd {
		dirs = c.InitrdSearchPaths
	}
	seen := map[string]bool{}
	var out []b1Image
	for _, dir := range dirs {
		df, err := openIn(root, dir, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
				continue
			}
			return nil, err
		}
		names, err := df.Readdirnames(-1)
		df.Close()
		if err != nil {
			return nil, err
		}
		for _, fn := range names {
			if strings.HasPrefix(fn, ".sysupdate.") || strings.HasPrefix(fn, ".#") {
				continue
			}
			p := path.Join(dir, fn)
			f, err := openIn(root, p, unix.O_PATH)
			if err != nil {
				continue
			}
			st, err := statFd(f)
			resolved, rerr := fdPath(f)
			f.Close()
			if err != nil || rerr != nil {
				continue
			}
			img := b1Image{FileName: fn}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				if !strings.HasSuffix(fn, ".raw") {
					continue
				}
				img.Type = b1Raw
				img.Name = strings.TrimSuffix(strings.TrimSuffix(fn, ".raw"), "."+c.Name)
			case unix.S_IFDIR:
				if strings.HasSuffix(fn, ".v") || strings.HasSuffix(fn, ".mstack") {
					continue // vpick: B1's
				}
				img.Type = b1Directory
				img.Name = strings.TrimSuffix(fn, "."+c.Name)
			case unix.S_IFBLK:
				img.Type = b1Block
				img.Name = fn
			default:
				continue
			}
			if img.Name == "" || seen[img.Name] {
				continue
			}
			seen[img.Name] = true
			img.Path = stripRoot(root, resolved)
			out = append(out, img)
		}
	}
	return out, nil
}

// stripRoot turns a kernel-reported absolute path into an in-root path.
func stripRoot(root *os.File, abs string) string {
	rp, err := fdPath(root)
	if err != nil || rp == "/" {
		return abs
	}
	if abs == rp {
		return "/"
	}
	if strings.HasPrefix(abs, rp+"/") {
		return abs[len(rp):]
	}
	return abs
}

// b1Identity is what systemd records per image in origin: computed from the
// image file itself (no mount, no loop device).
type b1Identity struct {
	Path       string // root-relative, "/"-prefixed
	VerityHash string // lowercase hex; when set, nothing else is recorded
	OnMountID  uint64
	HandleType int32
	Handle     string // hex; "" when no handle
	Inode      uint64
	Crtime     uint64
	Mtime      uint64
}

// b1ImageIdentity computes systemd's origin fields for an image.
func b1ImageIdentity(root *os.File, img b1Image) (b1Identity, error) {
	id := b1Identity{Path: img.Path}
	f, err := openIn(root, img.Path, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return id, err
	}
	defer f.Close()
	var stx unix.Statx_t
	if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_BASIC_STATS|unix.STATX_BTIME|unix.STATX_MNT_ID_UNIQUE, &stx); err != nil {
		return id, &os.PathError{Op: "statx", Path: f.Name(), Err: err}
	}
	id.Inode = stx.Ino
	if stx.Mask&unix.STATX_BTIME != 0 {
		id.Crtime = uint64(stx.Btime.Sec)*1e6 + uint64(stx.Btime.Nsec)/1000
	}
	buf := make([]byte, 8)
	if rf, err := reopen(f, unix.O_RDONLY|unix.O_NOFOLLOW); err == nil {
		if n, err := unix.Fgetxattr(int(rf.Fd()), "user.crtime_usec", buf); err == nil && n == 8 {
			if v := binary.LittleEndian.Uint64(buf); id.Crtime == 0 || v < id.Crtime {
				id.Crtime = v
			}
		}
		rf.Close()
	}
	if img.Type == b1Raw {
		id.Mtime = uint64(stx.Mtime.Sec)*1e6 + uint64(stx.Mtime.Nsec)/1000
	}
	if stx.Mask&unix.STATX_MNT_ID_UNIQUE != 0 {
		id.OnMountID = stx.Mnt_id
	}
	const atHandleFID = 0x200
	h, _, herr := unix.NameToHandleAt(int(f.Fd()), "", unix.AT_EMPTY_PATH|atHandleFID)
	if herr != nil {
		h, _, herr = unix.NameToHandleAt(int(f.Fd()), "", unix.AT_EMPTY_PATH)
	}
	if herr == nil {
		id.HandleType = h.Type()
		id.Handle = hex.EncodeToString(h.Bytes())
	}
	return id, nil
}

// b1DirFingerprint hashes the metadata of every entry of a directory
// image (names, types, sizes, mtimes, ctimes, inodes), so that an in-place
// edit changes it (systemd issue 41523). It reads only inode metadata.
func b1DirFingerprint(dir *os.File) (string, error) {
	h := sha256.New()
	base := fmt.Sprintf("/proc/self/fd/%d", dir.Fd())
	fsys := os.DirFS(base)
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(base+"/"+p, &st); err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o %d %d.%d %d.%d %d\n", p, st.Mode, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Ino)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

package record

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// IdentityOptions tune ImageIdentity.
type IdentityOptions struct {
	// Getenv reads SYSTEMD_DISSECT_VERITY_SIDECAR ("0" disables the
	// xattr/sidecar root hash lookup, as in systemd); nil means os.Getenv.
	Getenv func(string) string
	// EmbeddedVerity is the seam for the second and third sources of a
	// root hash (a *-verity-sig partition's "rootHash", else the data and
	// verity partition UUIDs concatenated): called for raw and block images
	// that have no xattr/sidecar hash, with an O_PATH handle on the image.
	// It returns nil when the image carries no verity. nil skips them.
	EmbeddedVerity func(img discover.Image, f *os.File) ([]byte, error)
}

// ImageIdentity computes img's entry of the origin record exactly as
// systemd 262 does, without mounting anything:
//
//   - Path: img.Path, the resolved path relative to the root;
//   - if a dm-verity root hash is known (raw/block images; see
//     VerityRootHash and IdentityOptions.EmbeddedVerity): only VerityHash;
//   - otherwise OnMountID and a file handle (name_to_handle_at with
//     AT_HANDLE_FID, unique mount ID preferred, see
//     mount.NameToHandleAt), or the inode if the file system gives no
//     handle; Crtime = min(statx birth time, xattr user.crtime_usec) in µs
//     (0 for block devices); Mtime = st_mtime in µs for raw images, 0 for
//     directories and block devices (systemd deliberately ignores a
//     directory's own mtime; see DirFingerprint for in-place edits).
func ImageIdentity(root *rootfs.Root, img discover.Image, opts IdentityOptions) (OriginExtension, error) {
	id := OriginExtension{Name: img.Name, Path: img.Path}
	f, err := root.OpenPath(img.Path)
	if err != nil {
		return id, err
	}
	defer f.Close()

	if img.Type == discover.ImageRaw || img.Type == discover.ImageBlock {
		hash, err := VerityRootHash(root, img, f, opts.Getenv)
		if err != nil {
			return id, err
		}
		if hash == nil && opts.EmbeddedVerity != nil {
			if hash, err = opts.EmbeddedVerity(img, f); err != nil {
				return id, fmt.Errorf("verity root hash of %s: %w", img.Path, err)
			}
		}
		if hash != nil {
			id.VerityHash = hex.EncodeToString(hash)
			return id, nil
		}
	}

	fd := int(f.Fd())
	typ, handle, mnt, _, err := mount.NameToHandleAt(fd, "", 0)
	switch {
	case err == nil:
		id.HasHandle, id.HandleType, id.Handle, id.OnMountID = true, typ, hex.EncodeToString(handle), mnt
	case mount.IsNameToHandleAtFatal(err):
		return id, err
	default:
		if id.OnMountID, _, err = mount.StatxMountID(fd); err != nil {
			return id, err
		}
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return id, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	id.Inode = st.Ino
	if img.Type != discover.ImageBlock {
		if id.Crtime, err = CrtimeUsec(f); err != nil {
			return id, err
		}
	}
	if img.Type == discover.ImageRaw {
		id.Mtime = uint64(st.Mtim.Sec)*1_000_000 + uint64(st.Mtim.Nsec)/1000
	}
	return id, nil
}

// procFdPath names an O_PATH fd for the path-based xattr calls, which
// (unlike fgetxattr) accept O_PATH handles through /proc.
func procFdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// GetxattrAll reads a whole extended attribute; absent (ENODATA,
// EOPNOTSUPP) is (nil, nil).
func GetxattrAll(f *os.File, name string) ([]byte, error) {
	p := procFdPath(f)
	for range 8 {
		n, err := unix.Getxattr(p, name, nil)
		if err == nil {
			buf := make([]byte, n)
			if n, err = unix.Getxattr(p, name, buf); err == nil {
				return buf[:n], nil
			}
		}
		switch {
		case errors.Is(err, unix.ERANGE), errors.Is(err, unix.EINTR):
			continue // grew between the two calls
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		default:
			return nil, &os.PathError{Op: "getxattr " + name, Path: f.Name(), Err: err}
		}
	}
	return nil, &os.PathError{Op: "getxattr " + name, Path: f.Name(), Err: unix.EBUSY}
}

// CrtimeUsec is systemd's fd_getcrtime(): the statx birth time (ignored if
// 0 seconds) and the user.crtime_usec xattr (8 bytes little endian,
// ignored if 0 or all ones), the older of the two; 0 if neither exists.
func CrtimeUsec(f *os.File) (uint64, error) {
	var a uint64
	haveA := false
	if ts, ok, err := mount.Btime(int(f.Fd())); err == nil && ok {
		a, haveA = uint64(ts.Sec)*1_000_000+uint64(ts.Nsec)/1000, true
	}
	x, err := GetxattrAll(f, "user.crtime_usec")
	if err != nil || len(x) != 8 {
		x = nil // systemd ignores unreadable or malformed values too
	}
	if x != nil {
		b := binary.LittleEndian.Uint64(x)
		if b != 0 && b != ^uint64(0) {
			if !haveA || b < a {
				return b, nil
			}
		}
	}
	if haveA {
		return a, nil
	}
	return 0, nil
}

// VerityRootHash returns the dm-verity root hash systemd's
// verity_settings_load() would find for a raw or block image (f is an
// O_PATH handle on it), or nil: the xattr user.verity.roothash, else the
// sidecar "<image minus .raw>.roothash" next to it, else
// user.verity.usrhash, else "<image minus .raw>.usrhash". A sidecar is one
// line of hex; fewer than 16 bytes or bad hex is an error (systemd fails
// the merge). getenv("SYSTEMD_DISSECT_VERITY_SIDECAR") == "0" (or another
// false boolean) disables the lookup.
func VerityRootHash(root *rootfs.Root, img discover.Image, f *os.File, getenv func(string) string) ([]byte, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := getenv("SYSTEMD_DISSECT_VERITY_SIDECAR"); v != "" {
		if b, ok := kcmdline.ParseBool(v); ok && !b {
			return nil, nil
		}
	}
	if img.Type == discover.ImageBlock && root.Path() == "/" && strings.HasPrefix(img.Path, "/dev/") {
		return nil, nil // systemd skips sidecars for device paths
	}
	for _, kind := range []string{"roothash", "usrhash"} {
		text, err := GetxattrAll(f, "user.verity."+kind)
		if err != nil {
			return nil, err
		}
		src := img.Path + " xattr user.verity." + kind
		if text == nil {
			side := AuxiliaryPath(img.Path, "."+kind)
			data, err := root.ReadRegular(side, image.MaxRootHashText, rootfs.NoFollow)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			line, _, _ := strings.Cut(string(data), "\n")
			text, src = []byte(strings.TrimSuffix(line, "\r")), side
		}
		h, err := hex.DecodeString(string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: invalid root hash: %w", src, err)
		}
		if len(h) < 16 {
			return nil, fmt.Errorf("%s: root hash of %d bytes is too short: %w", src, len(h), unix.EINVAL)
		}
		return h, nil
	}
	return nil, nil
}

// AuxiliaryPath is systemd's build_auxiliary_path(): ".raw" replaced by
// suffix, or suffix appended when the image does not end in ".raw".
func AuxiliaryPath(image, suffix string) string {
	if s, ok := strings.CutSuffix(image, ".raw"); ok {
		return s + suffix
	}
	return image + suffix
}

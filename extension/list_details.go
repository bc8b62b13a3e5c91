package extension

import (
	"context"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/record"
)

// ImageDetails is one image as systemd 262's Varlink List method
// (io.systemd.sysext.List) reports it: the fields of its discovered Image
// object, read from the image's inode (the times, the allocated and
// apparent size, whether it can be written).
type ImageDetails struct {
	ImageInfo
	// Crtime is the creation time in µs (statx birth time or the
	// user.crtime_usec xattr, as systemd), 0 if unknown.
	Crtime uint64
	// Mtime is the modification time in µs of a raw image or block
	// device; 0 for directories (systemd reports none for them).
	Mtime uint64
	// Usage is the allocated size (st_blocks * 512) and Limit the size
	// (st_size) of a raw image; both are only reported for raw images.
	Usage, Limit int64
	// ReadOnly is set when the image cannot be written: it is on a
	// read-only file system, or a raw image has no write permission bit.
	ReadOnly bool
}

// ListDetails is List with the per-image details Varlink clients get.
// An image whose inode cannot be read is still listed, without details
// (the reason is logged), as List does with its time.
func ListDetails(ctx context.Context, opt Options) ([]ImageDetails, error) {
	infos, err := List(ctx, opt)
	if err != nil {
		return nil, err
	}
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	imgs, err := e.discover()
	if err != nil {
		return nil, err
	}
	byName := make(map[string]discover.Image, len(imgs))
	for _, img := range imgs {
		byName[img.Name] = img
	}
	out := make([]ImageDetails, 0, len(infos))
	for _, info := range infos {
		d := ImageDetails{ImageInfo: info}
		if img, ok := byName[info.Name]; ok {
			if err := e.details(img, &d); err != nil {
				e.log.Warnf("%s: cannot read %s, listing it without details: %v", e.cls.Name, e.display(img.Path), err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// details fills d from the inode of img, opened inside the root.
func (e *engine) details(img discover.Image, d *ImageDetails) error {
	f, err := e.rfs.OpenPath(img.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	if d.Crtime, err = record.CrtimeUsec(f); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	var sfs unix.Statfs_t
	if err := fstatfs(int(f.Fd()), &sfs); err != nil {
		return &os.PathError{Op: "fstatfs", Path: f.Name(), Err: err}
	}
	d.ReadOnly = sfs.Flags&unix.ST_RDONLY != 0
	if img.Type == discover.ImageRaw || img.Type == discover.ImageBlock {
		d.Mtime = uint64(st.Mtim.Sec)*1_000_000 + uint64(st.Mtim.Nsec)/1000
	}
	if img.Type == discover.ImageRaw {
		d.Usage, d.Limit = st.Blocks*512, st.Size
		d.ReadOnly = d.ReadOnly || st.Mode&0o222 == 0
	}
	return nil
}

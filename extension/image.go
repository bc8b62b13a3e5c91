package extension

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// openedImage is an image made ready to be a layer source: tree is the
// root of the image's file tree (the directory itself, or the root of its
// filesystem mounted detached). Nothing of it is visible in any mount
// namespace; closing it drops the detached mounts and the loop device
// (autoclear), unless an overlay still holds them.
type openedImage struct {
	img     discover.Image
	tree    *os.File
	usrOnly bool // GPT usr partition: tree is the image's /usr
	closers []func() error
	// verityHash is the root hash when the image was opened through
	// dm-verity (see image_verity.go); it replaces the weak identity in
	// origin, as systemd does.
	verityHash []byte
}

// Close releases everything the image holds.
func (o *openedImage) Close() error {
	var first error
	if o.tree != nil {
		o.tree.Close()
		o.tree = nil
	}
	for i := len(o.closers) - 1; i >= 0; i-- {
		if err := o.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	o.closers = nil
	return first
}

// imageError names the image file and the rule it broke.
type imageError struct {
	Name, Path, Rule string
	Err              error
}

func (e *imageError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("image %s (%s): %s: %v", e.Name, e.Path, e.Rule, e.Err)
	}
	return fmt.Sprintf("image %s (%s): %s", e.Name, e.Path, e.Rule)
}
func (e *imageError) Unwrap() error { return e.Err }

// openImage opens one discovered image: a directory directly, a raw file
// by its filesystem magic (squashfs, erofs, ext4) or GPT partition table,
// through a read-only autoclear loop device.
func (e *engine) openImage(img discover.Image) (*openedImage, error) {
	switch img.Type {
	case discover.ImageDirectory:
		d, err := openDirIn(e.root, img.Path)
		if err != nil {
			return nil, &imageError{img.Name, e.display(img.Path), "cannot open directory image", err}
		}
		return &openedImage{img: img, tree: d}, nil
	case discover.ImageRaw, discover.ImageBlock:
		return e.openRaw(img)
	}
	return nil, &imageError{img.Name, e.display(img.Path), "unsupported image type", nil}
}

// openRaw detects what a raw image holds and mounts it detached.
func (e *engine) openRaw(img discover.Image) (*openedImage, error) {
	f, err := rootfs.OpenIn(e.root, img.Path, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "cannot open image file", err}
	}
	defer f.Close()
	d, hashFile, err := backend.dissect(e, img, f)
	if hashFile != nil {
		defer hashFile.Close()
	}
	if err == nil && d == nil {
		err = errors.New("the dissection found nothing to mount")
	}
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "cannot dissect image", err}
	}
	// The policy is checked before anything is set up, with the
	// signature taken as good if there is one: a signature that does not
	// verify is refused by the set-up itself.
	pol, from, err := e.imagePolicy()
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "image policy", err}
	}
	sig := image.SignatureAbsent
	if d.Verity != nil && d.Verity.Signature != nil {
		sig = image.SignatureVerified
	}
	if _, err := pol.Check(img.Name, d, sig); err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "refused by the image policy (" + from + ")", err}
	}
	if d.Verity != nil {
		return e.openVerity(img, f, d, hashFile)
	}
	// The partition is the one the dissection rules picked (native root,
	// else usr where allowed, no-auto left out, newest label): there is
	// no second picker.
	o := &openedImage{img: img, usrOnly: d.UsrOnly}
	fstype, offset, size := d.Data.FSType, d.Data.Region.Offset, d.Data.Region.Size
	if d.Data.UUID == "" && offset == 0 {
		size = 0 // a bare file system: the whole file
	}
	mnt, closeLoop, err := e.mountBlockImage(f, fstype, offset, size)
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "cannot mount " + fstype + " image", err}
	}
	o.tree = mnt
	o.closers = append(o.closers, closeLoop)
	return o, nil
}

// mountBlockImage attaches f (or a window of it) to a read-only autoclear
// loop device and mounts fstype from it detached. The loop fd stays open
// until the superblock exists (with autoclear the device would vanish
// otherwise); the returned closer drops it afterwards.
func (e *engine) mountBlockImage(f *os.File, fstype string, offset, size uint64) (*os.File, func() error, error) {
	op := e.log.Op("attach %s loop device for %s (offset %d, size %d)", fstype, f.Name(), offset, size)
	lp, err := mount.AttachLoop(f, mount.LoopOptions{ReadOnly: true, Autoclear: true, Offset: offset, SizeLimit: size})
	if err != nil {
		return nil, nil, op.Finish(err)
	}
	op.Finish(nil)
	fc, err := mount.NewFS(fstype, lp.Path)
	if err != nil {
		lp.Close()
		return nil, nil, err
	}
	defer fc.Close()
	// A read-only loop device can only back a read-only superblock;
	// without "ro" the kernel opens the device for writing (EACCES).
	if err := fc.SetFlag("ro"); err != nil {
		lp.Close()
		return nil, nil, err
	}
	mnt, err := fc.Mount(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV)
	if err != nil {
		lp.Close()
		return nil, nil, err
	}
	return mnt, lp.Close, nil
}

// layer returns an O_PATH fd of <tree>/<hierarchy> if the image provides
// that hierarchy as a non-empty directory, as systemd's
// determine_used_extensions requires; nil otherwise.
func (o *openedImage) layer(h string) (*os.File, error) {
	rel := h
	if o.usrOnly {
		// A usr partition is the image's /usr: only /usr and below exist.
		if h != "/usr" && !hasPrefixPath(h, "/usr") {
			return nil, nil
		}
		rel = h[len("/usr"):]
	}
	d, err := openDirIn(o.tree, rel)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil
		}
		return nil, err
	}
	empty, err := dirIsEmpty(d)
	if err != nil || empty {
		d.Close()
		return nil, err
	}
	return d, nil
}

func hasPrefixPath(p, prefix string) bool {
	return len(p) > len(prefix) && p[:len(prefix)] == prefix && p[len(prefix)] == '/'
}

package extension

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ImageTree is one image opened read-only for reading its files outside a
// merge: Dir is its tree at the class's hierarchy (etc/ of a confext).
// Close releases the detached mounts and loop and dm devices behind it.
type ImageTree struct {
	Dir    *os.File
	Where  string // the image file, for messages
	opened *openedImage
}

// Close releases everything the tree holds.
func (t *ImageTree) Close() error {
	if t.Dir != nil {
		t.Dir.Close()
		t.Dir = nil
	}
	return t.opened.Close()
}

// OpenImageTree finds the image called name in the class's search paths of
// opt.Root and opens it exactly as a merge would: dm-verity, signature and
// image policy for raw images, and the extension-release checked against
// the root's os-release. The prepare step reads the vendor defaults from
// the default confext this way before the merge exists, so that a raw
// (signed) default confext serves as well as a directory one, and an image
// the merge would refuse is not trusted either. It changes nothing on
// disk; nil and no error when there is no such image.
func OpenImageTree(opt Options, name string) (*ImageTree, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	if _, _, err := e.imagePolicy(); err != nil {
		return nil, err
	}
	imgs, err := e.discover()
	if err != nil {
		return nil, fmt.Errorf("discover %s images: %w", e.cls.Name, err)
	}
	var img *Image
	for i := range imgs {
		if imgs[i].Name == name {
			img = &imgs[i]
			break
		}
	}
	if img == nil {
		return nil, nil
	}
	o, err := e.openImage(*img)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			o.Close()
		}
	}()
	host, scope, err := e.hostRelease()
	if err != nil {
		return nil, err
	}
	valid, reason, err := e.validate(o, host, scope)
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "extension-release", err}
	}
	if !valid {
		return nil, &imageError{img.Name, e.display(img.Path), reason, nil}
	}
	if len(e.cls.Hierarchies) == 0 {
		return nil, errors.New("extension: class without hierarchy")
	}
	dir, err := o.layer(e.cls.Hierarchies[0])
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "cannot open " + e.cls.Hierarchies[0], err}
	}
	if dir == nil {
		return nil, &imageError{img.Name, e.display(img.Path), "image has no " + e.cls.Hierarchies[0], nil}
	}
	// layer gives an O_PATH descriptor; readers need a real one.
	rd, err := reopen(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	dir.Close()
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "cannot open " + e.cls.Hierarchies[0], err}
	}
	ok = true
	return &ImageTree{Dir: rd, Where: e.display(img.Path), opened: o}, nil
}

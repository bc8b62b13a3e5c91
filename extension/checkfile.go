package extension

import (
	"fmt"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/release"
)

// CheckImageFile opens the raw image at in-root path p as the image called
// name exactly as a merge would (dissection, dm-verity, signature, image
// policy, then the extension-release file of name checked against the
// root's os-release, or against host when it is not nil) and returns the
// release file's fields. It is for images that are not in a search path
// yet: a downloaded image is checked before it is placed or linked.
// Everything it set up is released before it returns; nothing on disk
// changes.
func CheckImageFile(opt Options, p, name string, host *release.Host) (map[string]string, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	if _, _, err := e.imagePolicy(); err != nil {
		return nil, err
	}
	img := discover.Image{Name: name, Path: p, Type: discover.ImageRaw}
	o, err := e.openImage(img)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	h, scope, err := e.hostRelease()
	if err != nil {
		return nil, err
	}
	if host != nil {
		h = *host
	}
	valid, reason, err := e.validate(o, h, scope)
	if err != nil {
		return nil, &imageError{name, e.display(p), "extension-release", err}
	}
	if !valid {
		return nil, &imageError{name, e.display(p), reason, nil}
	}
	cls := *e.cls
	if o.usrOnly {
		cls.ReleaseDir = cls.ReleaseDir[len("/usr"):]
	}
	rf, err := discover.ReadReleaseFile(o.tree, &cls, name, false)
	if err != nil {
		return nil, &imageError{name, e.display(p), fmt.Sprintf("extension-release of %s", name), err}
	}
	return rf.Fields, nil
}

package extension

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// dm-verity images. An image that carries verity data (a *-verity GPT
// partition, a root hash in a signature partition, a .roothash sidecar or
// the user.verity.roothash xattr) is set up through device-mapper
// (package image) and mounted from the verity device, or refused: it is
// never mounted without verity, whatever the policy. systemd 262 does the
// same (no device-mapper: "Cannot initialize device-mapper", the merge
// fails). The root hash then replaces the weak identity in origin, as
// systemd records it.

// imageBackend is what the engine asks of package image; tests replace
// parts of it.
type imageBackend struct {
	// dissect returns the dissection of a raw image (f opened read-only),
	// the opened .verity sidecar when its hash tree lives there, or an
	// error naming the rule the image broke.
	dissect func(e *engine, img discover.Image, f *os.File) (*image.Dissected, *os.File, error)
	// setup is image.SetupVerity.
	setup func(f *os.File, d *image.Dissected, o image.SetupOptions) (*image.Device, error)
	// verify checks a root hash signature in userspace.
	verify func(e *engine, v *image.Verity) error
}

var backend = imageBackend{dissect: dissectImage, setup: image.SetupVerity, verify: verifySignature}

// verifySignature checks a root hash signature in userspace against the
// certificates in the verity.d directories of the running system
// (paths.TrustRoot: the initrd's own in the initrd, as
// systemd-confext-sysroot does; never the target root's, whose /etc is
// writable and cannot vouch for the images it holds).
func verifySignature(e *engine, v *image.Verity) error {
	certs, warns := e.trustedCerts()
	for _, w := range warns {
		e.log.Warnf("verity.d certificate skipped: %v", w)
	}
	c, err := image.VerifyRootHashSignature(v.RootHash, v.Signature, certs)
	if err != nil {
		return err
	}
	e.log.Infof("root hash %x: signature verified with %s/%s (%s)", v.RootHash, c.Dir, c.Name, c.Cert.Subject.CommonName)
	return nil
}

// openVerity sets img up through dm-verity and mounts its file system
// from the verity device, detached. The device is armed for deferred
// removal once mounted, so it goes away with the last mount of it
// (unmerge, or the replaced merge's layers), as systemd's do.
func (e *engine) openVerity(img discover.Image, f *os.File, d *image.Dissected, hashFile *os.File) (*openedImage, error) {
	dev, err := backend.setup(f, d, image.SetupOptions{
		Log: e.log, Name: img.Name, HashFile: hashFile,
		VerifySignature: func(v *image.Verity) error { return backend.verify(e, v) },
	})
	if err != nil {
		return nil, &imageError{img.Name, e.display(img.Path), "dm-verity set-up failed; an image with verity data is never mounted without it", err}
	}
	fstype := d.Data.FSType
	mnt, err := mountVerityDevice(e, dev.Node, fstype)
	if err != nil {
		dev.Close()
		return nil, &imageError{img.Name, e.display(img.Path), "cannot mount " + fstype + " from dm-verity device " + dev.Name, err}
	}
	if err := dev.Mounted(); err != nil {
		e.log.Warnf("image %s: %v", img.Name, err)
	}
	how := "unsigned"
	switch dev.Signed {
	case "kernel":
		how = "signature checked by the kernel"
	case "userspace":
		how = "signature verified in userspace"
	}
	e.log.Infof("image %s: mounted through dm-verity device %s (root hash %x, %s%s)", img.Name, dev.Name, d.Verity.RootHash, how,
		map[bool]string{true: ", reused", false: ""}[dev.Reused])
	return &openedImage{img: img, tree: mnt, usrOnly: d.UsrOnly, verityHash: d.Verity.RootHash}, nil
}

// mountVerityDevice mounts fstype read-only from a verity device node.
func mountVerityDevice(e *engine, node, fstype string) (*os.File, error) {
	if fstype == "" {
		return nil, fmt.Errorf("no file system type for %s", node)
	}
	op := e.log.Op("mount %s from %s", fstype, node)
	fc, err := mount.NewFS(fstype, node)
	if err != nil {
		return nil, op.Finish(err)
	}
	defer fc.Close()
	if err := fc.SetFlag("ro"); err != nil {
		return nil, op.Finish(err)
	}
	mnt, err := fc.Mount(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV)
	return mnt, op.Finish(err)
}

// embeddedVerity is IdentityOptions.EmbeddedVerity: the root hash an
// image's dissection finds (signature partition, partition UUIDs),
// computed by reading the image only, so that an unchanged refresh of a
// verity image is decided without any loop or dm device.
func (e *engine) embeddedVerity(img discover.Image, f *os.File) ([]byte, error) {
	r, err := reopen(f, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	d, hf, err := backend.dissect(e, img, r)
	if hf != nil {
		hf.Close()
	}
	if err != nil || d == nil || d.Verity == nil {
		// A dissection error is reported when the image is opened.
		return nil, nil
	}
	return d.Verity.RootHash, nil
}

// identityOptions are the options of every ImageIdentity call of the
// engine.
func (e *engine) identityOptions() record.IdentityOptions {
	return record.IdentityOptions{Getenv: e.getenv, EmbeddedVerity: e.embeddedVerity}
}

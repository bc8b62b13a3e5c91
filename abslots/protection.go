package abslots

import (
	"errors"
	"io"
	"os"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// Protection values of a chosen image, in image policy terms.
const (
	ProtSigned      = "signed"      // dm-verity data and a root hash signature
	ProtVerity      = "verity"      // dm-verity data, no signature
	ProtUnprotected = "unprotected" // a plain file system image
)

// imageOpener is the part of a root (rootfs.Root) that opens an image
// for reading by fd, inside the root.
type imageOpener interface {
	OpenRegular(name string, links rootfs.Links) (*os.File, error)
}

// annotateProtection records for every chosen image whether it carries
// dm-verity data and a signature, from its dissection (partition table,
// verity and signature partitions, sidecars): reading only, nothing is
// set up. The signature is verified when the image is merged, not here.
func annotateProtection(root FS, p *Plan) {
	op, ok := root.(imageOpener)
	if !ok {
		return
	}
	for i := range p.Choices {
		c := &p.Choices[i]
		for _, img := range []string{c.Image, c.Fallback} {
			if img == "" {
				continue
			}
			if prot, ok := protectionOf(op, img); ok {
				c.Protection = prot
				break
			}
		}
	}
}

// protectionOf dissects the image at in-root path p; ok is false when p
// cannot be opened (not there yet: a planned move).
func protectionOf(op imageOpener, p string) (string, bool) {
	f, err := op.OpenRegular(p, rootfs.FollowInRoot)
	var bad *rootfs.FileRuleError
	if errors.As(err, &bad) {
		return "invalid (" + err.Error() + ")", true
	}
	if err != nil {
		return "", false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", false
	}
	o := image.DissectOptions{AllowUsr: true}
	base := strings.TrimSuffix(p, ".raw")
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	// A sidecar is hostile input: a FIFO, a device or a link there makes
	// the image invalid (the merge refuses it too), never a blocked read.
	var refused error
	side := func(suffix string) *os.File {
		sf, err := op.OpenRegular(base+suffix, rootfs.NoFollow)
		if errors.As(err, &bad) && refused == nil {
			refused = err
		}
		if err != nil {
			return nil
		}
		closers = append(closers, sf)
		return sf
	}
	if sf := side(".roothash"); sf != nil {
		o.RootHashFile = sf
	}
	if sf := side(".roothash.p7s"); sf != nil {
		o.RootHashSigFile = sf
	}
	if sf := side(".verity"); sf != nil {
		if vst, err := sf.Stat(); err == nil {
			o.VerityFile, o.VerityFileSize, o.VerityPath = sf, vst.Size(), base+".verity"
		}
	}
	if refused != nil {
		return "invalid (" + refused.Error() + ")", true
	}
	d, err := image.Dissect(f, st.Size(), o)
	switch {
	case err != nil:
		return "invalid (" + err.Error() + ")", true
	case d.Verity == nil:
		return ProtUnprotected, true
	case d.Verity.Signature != nil:
		return ProtSigned, true
	default:
		return ProtVerity, true
	}
}

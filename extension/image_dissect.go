package extension

import (
	"bytes"
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// dissectImage dissects a raw or block image with package image (GPT/DDI
// partitions, verity superblock, signature partition) after reading what
// lives next to it inside the root, as systemd's verity_settings_load
// does: the user.verity.roothash xattr, the .roothash, .roothash.p7s and
// .verity sidecars (SYSTEMD_DISSECT_VERITY_SIDECAR=0 turns the sidecars
// and the xattr off). It returns the opened .verity sidecar when the hash
// tree is there.
func dissectImage(e *engine, img discover.Image, f *os.File) (*image.Dissected, *os.File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if img.Type == discover.ImageBlock {
		if size, err = blockDeviceSize(f); err != nil {
			return nil, nil, err
		}
	}
	o := image.DissectOptions{AllowUsr: e.cls != config.Confext}
	sidecars := true
	if v := e.getenv("SYSTEMD_DISSECT_VERITY_SIDECAR"); v != "" {
		if b, ok := kcmdline.ParseBool(v); ok && !b {
			sidecars = false
		}
	}
	var hashFile *os.File
	if sidecars && !(img.Type == discover.ImageBlock && e.rootPath == "/") {
		x, err := record.GetxattrAll(f, "user.verity.roothash")
		if err != nil {
			return nil, nil, err
		}
		o.RootHashXattr = string(x)
		if b, err := e.rfs.ReadRegular(record.AuxiliaryPath(img.Path, ".roothash"), image.MaxRootHashText, rootfs.NoFollow); err == nil {
			o.RootHashFile = bytes.NewReader(b)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		if b, err := e.rfs.ReadRegular(record.AuxiliaryPath(img.Path, ".roothash.p7s"), image.MaxSigFile, rootfs.NoFollow); err == nil {
			o.RootHashSigFile = bytes.NewReader(b)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		// The hash tree is read in place (its size is checked by the
		// dissection), but never from a FIFO or a device.
		vp := record.AuxiliaryPath(img.Path, ".verity")
		hf, err := rootfs.OpenRegular(e.root, vp, rootfs.NoFollow)
		switch {
		case err == nil:
			hst, err := hf.Stat()
			if err != nil {
				hf.Close()
				return nil, nil, err
			}
			hashFile = hf
			o.VerityFile, o.VerityFileSize, o.VerityPath = hf, hst.Size(), vp
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOENT):
			return nil, nil, err
		}
	}
	d, err := image.Dissect(f, size, o)
	if err != nil {
		if hashFile != nil {
			hashFile.Close()
		}
		return nil, nil, err
	}
	if d.Verity == nil || d.Verity.HashPath == "" {
		if hashFile != nil {
			hashFile.Close()
			hashFile = nil
		}
	}
	return d, hashFile, nil
}

// blockDeviceSize is the size of a block device (BLKGETSIZE64).
func blockDeviceSize(f *os.File) (int64, error) {
	n, err := f.Seek(0, 2)
	if err != nil {
		return 0, err
	}
	_, err = f.Seek(0, 0)
	return n, err
}

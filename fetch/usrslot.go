package fetch

import (
	"bytes"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// VersionOfUsrPartition reads versionKey from the os-release of the /usr
// partition labelled label (devDir/disk/by-partlabel/LABEL), the other
// slot an update has just written: its file system is mounted read-only,
// detached (visible in no mount namespace), read by descriptor and
// released again.
func VersionOfUsrPartition(devDir, label, versionKey string) (string, error) {
	if label == "" || label == "." || label == ".." || len(label) > 72 || path.Base(label) != label {
		return "", fmt.Errorf("--usr=%q is not a partition label", label)
	}
	dev := path.Join(devDir, "disk/by-partlabel", label)
	f, err := os.Open(dev)
	if err != nil {
		return "", fmt.Errorf("--usr=%s: %w", label, err)
	}
	defer f.Close()
	fstype, err := image.DetectFS(f, 0)
	if err != nil || fstype == "" {
		return "", fmt.Errorf("--usr=%s: %s holds no squashfs/erofs/ext4 file system (%v)", label, dev, err)
	}
	fc, err := mount.NewFS(fstype, dev)
	if err != nil {
		return "", err
	}
	defer fc.Close()
	if err := fc.SetFlag("ro"); err != nil {
		return "", err
	}
	tree, err := fc.Mount(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC | unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return "", err
	}
	defer tree.Close()
	// The partition is the /usr tree: os-release is lib/os-release, read
	// with the module's bounded reader (a regular file, resolved inside
	// the partition, at most MaxConfigFile bytes: the partition is input).
	b, err := rootfs.ReadRegular(tree, "lib/os-release", rootfs.MaxConfigFile, rootfs.FollowInRoot)
	if err != nil {
		return "", fmt.Errorf("--usr=%s: lib/os-release: %w", label, err)
	}
	fields, err := release.Parse(bytes.NewReader(b), dev+":/lib/os-release")
	if err != nil {
		return "", err
	}
	v := fields[versionKey]
	if v == "" {
		return "", fmt.Errorf("--usr=%s: lib/os-release has no %s", label, versionKey)
	}
	return v, nil
}

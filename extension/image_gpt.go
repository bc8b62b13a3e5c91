package extension

import (
	"errors"
	"os"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
)

// gptPart is the partition of a GPT disk image that a class merges.
type gptPart struct {
	kind         string // "root" or "usr"
	offset, size uint64
	usr          bool
}

// readGPT reads f's primary GPT with package image's bounded reader: the
// header is validated (entry size and count, LBA ranges against the file
// size, 512- and 4096-byte sectors) before anything it sizes is read, so
// a hostile header costs an error, not the merge (issue 8 item 3).
func readGPT(f *os.File) (*image.GPT, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return image.ReadGPT(f, fi.Size())
}

// findGPTPartition reads the primary GPT of a disk image and picks the
// native root partition, else the usr partition (systemd's
// DISSECT_IMAGE_USR_NO_ROOT; only sysext has /usr).
func findGPTPartition(f *os.File, c *Class) (gptPart, error) {
	t, err := readGPT(f)
	if err != nil {
		return gptPart{}, err
	}
	arch := image.NativeArchitecture()
	var found *gptPart
	for _, p := range t.Partitions {
		part := gptPart{offset: p.Region.Offset, size: p.Region.Size}
		switch image.Designator(arch, p.Type) {
		case "root":
			part.kind = "root"
			return part, nil
		case "usr":
			if found == nil && c != Confext {
				part.kind, part.usr = "usr", true
				found = &part
			}
		}
	}
	if found != nil {
		return *found, nil
	}
	return gptPart{}, errors.New("GPT has no root partition for this architecture" + map[bool]string{true: "", false: " and no usr partition"}[c == Confext])
}

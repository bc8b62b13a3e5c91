package extension

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/u-root/u-root/pkg/mount/gpt"
)

// gptPart is the partition of a GPT disk image that a class merges.
type gptPart struct {
	kind         string // "root" or "usr"
	offset, size uint64
	usr          bool
}

// Discoverable Partitions Specification type GUIDs per architecture.
var gptRootTypes = map[string]string{
	"amd64": "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
	"arm64": "b921b045-1df0-41c3-af44-4c6f280d3fae",
}
var gptUsrTypes = map[string]string{
	"amd64": "8484680c-9521-48c6-9c11-b0720656f69e",
	"arm64": "b0e01050-ee5f-4390-949a-9101b17104e9",
}

// Verity hash partition types of the native architecture (root-verity,
// usr-verity).
var gptVerityTypes = map[string][]string{
	"amd64": {"2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", "77ff5f63-e7b6-4633-acf4-1565b864c0e6"},
	"arm64": {"df3300ce-d69f-4c92-978c-9bfb0f38d820", "6e11a4e7-fbca-4ded-b9e9-e1a512bb664e"},
}

// gptHasVerity reports whether f is a GPT disk image with a verity hash
// partition of the native architecture.
func gptHasVerity(f *os.File) (bool, error) {
	t, err := gpt.Table(f, gpt.HeaderOff)
	if err != nil {
		return false, err
	}
	for _, p := range t.Parts {
		typ := strings.ToLower(guidString(p.PartGUID))
		for _, v := range gptVerityTypes[runtime.GOARCH] {
			if typ == v {
				return true, nil
			}
		}
	}
	return false, nil
}

// guidString formats a GPT GUID in the usual textual form.
func guidString(g gpt.GUID) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", g.L, g.W1, g.W2, g.B[0:2], g.B[2:])
}

// findGPTPartition reads the primary GPT of a disk image (512-byte
// sectors) and picks the native root partition, else the usr partition
// (systemd's DISSECT_IMAGE_USR_NO_ROOT; only sysext has /usr).
func findGPTPartition(f *os.File, c *Class) (gptPart, error) {
	t, err := gpt.Table(f, gpt.HeaderOff)
	if err != nil {
		return gptPart{}, err
	}
	root, usr := gptRootTypes[runtime.GOARCH], gptUsrTypes[runtime.GOARCH]
	var found *gptPart
	for _, p := range t.Parts {
		if p.FirstLBA == 0 && p.LastLBA == 0 {
			continue
		}
		typ := strings.ToLower(guidString(p.PartGUID))
		part := gptPart{offset: p.FirstLBA * gpt.BlockSize, size: (p.LastLBA - p.FirstLBA + 1) * gpt.BlockSize}
		switch typ {
		case root:
			part.kind = "root"
			return part, nil
		case usr:
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

package abslots

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
)

// Slot is the booted /usr slot: informational, reported by plan and status.
type Slot struct {
	// Param and Value are the command line key that named the /usr device
	// and its value (e.g. verity.usr=PARTUUID=...).
	Param string `json:"param,omitempty"`
	Value string `json:"value,omitempty"`
	// UsrHash is verity.usrhash= when given.
	UsrHash  string `json:"usrhash,omitempty"`
	PartUUID string `json:"partuuid,omitempty"`
	// Label is the GPT partition name (USR-A or USR-B on Flatcar).
	Label string `json:"label,omitempty"`
	Disk  string `json:"disk,omitempty"`
	// Partitions are the USR-* partitions of that disk with their
	// ChromeOS-style attributes, the booted one marked.
	Partitions []SlotPartition `json:"partitions,omitempty"`
	// Error explains why the slot could not be read completely.
	Error string `json:"error,omitempty"`
}

// SlotPartition is one A/B partition and its boot attributes as Flatcar's
// update engine sets them: priority bits 48-51, tries 52-55, successful 56.
type SlotPartition struct {
	Number     int    `json:"number"`
	Label      string `json:"label"`
	PartUUID   string `json:"partuuid"`
	Priority   int    `json:"priority"`
	Tries      int    `json:"tries"`
	Successful bool   `json:"successful"`
	Booted     bool   `json:"booted"`
}

// SlotEnv holds the host paths ReadSlot uses (from package paths, so tests
// can point them at fixtures).
type SlotEnv struct {
	DevDir      string // /dev
	SysDevBlock string // /sys/dev/block
}

// usrParams are the command line keys that may name the /usr partition, in
// the order they are consulted; /dev/mapper values (the verity device) are
// skipped because they do not name the partition.
var usrParams = []string{"verity.usr", "mount.usr", "usr"}

// ReadSlot works out the booted slot from the kernel command line and the
// GPT of the disk holding it. It returns nil when the command line names no
// /usr device (e.g. offline on an unpacked tree).
func ReadSlot(c Cmdline, env SlotEnv) *Slot {
	s := &Slot{}
	s.UsrHash, _ = c.Get("verity.usrhash")
	for _, k := range usrParams {
		if v, ok := c.Get(k); ok && v != "" && !strings.HasPrefix(v, "/dev/mapper/") {
			s.Param, s.Value = k, v
			break
		}
	}
	if s.Value == "" {
		if s.UsrHash == "" {
			return nil
		}
		s.Error = "no /usr partition named on the kernel command line"
		return s
	}
	var node string
	switch v := s.Value; {
	case strings.HasPrefix(v, "PARTUUID="):
		s.PartUUID = strings.ToLower(strings.TrimPrefix(v, "PARTUUID="))
		node = path.Join(env.DevDir, "disk/by-partuuid", s.PartUUID)
	case strings.HasPrefix(v, "PARTLABEL="):
		s.Label = strings.TrimPrefix(v, "PARTLABEL=")
		node = path.Join(env.DevDir, "disk/by-partlabel", s.Label)
	case strings.HasPrefix(v, "/dev/"):
		node = path.Join(env.DevDir, strings.TrimPrefix(v, "/dev/"))
	default:
		s.Error = "unsupported /usr device form " + v
		return s
	}
	if err := s.readDisk(node, env); err != nil {
		s.Error = err.Error()
	}
	return s
}

// readDisk finds the whole disk holding partition node via sysfs and reads
// its GPT.
func (s *Slot) readDisk(node string, env SlotEnv) error {
	// os.Stat retries on EINTR itself; the raw stat gives the device number.
	fi, err := os.Stat(node)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return fmt.Errorf("%s is not a block device", node)
	}
	sys := path.Join(env.SysDevBlock, fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path.Join(real, "partition"))
	if err != nil {
		return fmt.Errorf("%s is not a partition: %w", node, err)
	}
	var num int
	fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &num)
	s.Disk = path.Join(env.DevDir, path.Base(path.Dir(real)))
	d, err := os.Open(s.Disk)
	if err != nil {
		return err
	}
	defer d.Close()
	return s.fromGPT(d, num)
}

// fromGPT fills the slot from a GPT; booted is the 1-based partition
// number (0 to match by PartUUID or Label).
func (s *Slot) fromGPT(r io.ReaderAt, booted int) error {
	// The bounded reader validates the header before anything it sizes
	// is read (a hostile or corrupt table is an error, never an
	// allocation of what the header claims); it also reads 4096-byte
	// sector disks.
	g, err := image.ReadGPT(r, image.SizeOf(r))
	if err != nil {
		return fmt.Errorf("%s: reading GPT: %w", s.Disk, err)
	}
	for _, pt := range g.Partitions {
		name, uuid := pt.Name, pt.UUID
		isBooted := booted == pt.Number || (booted == 0 && ((s.PartUUID != "" && uuid == s.PartUUID) || (s.Label != "" && name == s.Label)))
		if isBooted {
			s.Label, s.PartUUID = name, uuid
		}
		if !strings.HasPrefix(name, "USR-") && !isBooted {
			continue
		}
		a := pt.Attrs
		s.Partitions = append(s.Partitions, SlotPartition{
			Number: pt.Number, Label: name, PartUUID: uuid,
			Priority: int(a >> 48 & 0xf), Tries: int(a >> 52 & 0xf), Successful: a>>56&1 == 1,
			Booted: isBooted,
		})
	}
	return nil
}

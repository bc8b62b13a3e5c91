package abslots

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"golang.org/x/sys/unix"
)

const (
	uuidA = "7130c94a-213a-4e5a-8e26-6cce9662f132"
	uuidB = "e03dd35c-7c2d-4a47-b3fe-27f15780a57c"
)

// makeDisk writes a GPT disk image like Flatcar's: USR-A (3) booted with
// priority 2, tries 0, successful; USR-B (4) priority 1, tries 1.
func makeDisk(t *testing.T) string {
	t.Helper()
	testutil.RequireTool(t, "sgdisk")
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 8<<20)
	args := []string{"-o",
		"-n", "1:2048:+1M", "-c", "1:EFI-SYSTEM",
		"-n", "3:0:+2M", "-c", "3:USR-A", "-u", "3:" + uuidA, "-A", "3:set:49", "-A", "3:set:56",
		"-n", "4:0:+2M", "-c", "4:USR-B", "-u", "4:" + uuidB, "-A", "4:set:48", "-A", "4:set:52",
		img}
	if out, err := exec.Command("sgdisk", args...).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	return img
}

func TestSlotFromGPT(t *testing.T) {
	img := makeDisk(t)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &Slot{PartUUID: uuidB, Disk: img}
	if err := s.fromGPT(f, 0); err != nil {
		t.Fatal(err)
	}
	if s.Label != "USR-B" {
		t.Fatalf("label %q, want USR-B (%+v)", s.Label, s)
	}
	want := []SlotPartition{
		{Number: 3, Label: "USR-A", PartUUID: uuidA, Priority: 2, Tries: 0, Successful: true},
		{Number: 4, Label: "USR-B", PartUUID: uuidB, Priority: 1, Tries: 1, Booted: true},
	}
	if len(s.Partitions) != 2 || s.Partitions[0] != want[0] || s.Partitions[1] != want[1] {
		t.Fatalf("partitions %+v, want %+v", s.Partitions, want)
	}
}

// TestReadSlot resolves PARTUUID= and PARTLABEL= through a fake /dev and
// /sys/dev/block (a real block device node pointing at nothing, and the disk
// as an image file) to the GPT entry.
func TestReadSlot(t *testing.T) {
	testutil.RequireRoot(t)
	img := makeDisk(t)
	dir := testutil.Tmpfs(t)
	env := SlotEnv{DevDir: filepath.Join(dir, "dev"), SysDevBlock: filepath.Join(dir, "sys/dev/block")}
	writeTree(t, dir, tree{
		"/dev/disk/by-partuuid/" + uuidA:                "@../../vdz3",
		"/dev/disk/by-partlabel/USR-A":                  "@../../vdz3",
		"/sys/devices/virtual/block/vdz/vdz3/partition": "3\n",
		"/sys/dev/block/259:77":                         "@../../devices/virtual/block/vdz/vdz3",
	})
	if err := unix.Mknod(filepath.Join(dir, "dev/vdz3"), unix.S_IFBLK|0o600, int(unix.Mkdev(259, 77))); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(img)
	os.WriteFile(filepath.Join(dir, "dev/vdz"), b, 0o644)
	for _, cl := range []string{
		"mount.usr=/dev/mapper/usr verity.usr=PARTUUID=" + strings.ToUpper(uuidA) + " verity.usrhash=abc",
		"usr=PARTLABEL=USR-A",
		"mount.usr=/dev/vdz3",
	} {
		c := ParseCmdline(cl)
		s := ReadSlot(c, env)
		if s == nil || s.Error != "" || s.Label != "USR-A" || s.PartUUID != uuidA || len(s.Partitions) != 2 || !s.Partitions[0].Booted {
			t.Errorf("%q: %+v", cl, s)
		}
	}
	c := ParseCmdline("root=/dev/sda9")
	if s := ReadSlot(c, env); s != nil {
		t.Errorf("no usr= on the command line: %+v", s)
	}
	c = ParseCmdline("usr=PARTUUID=00000000-0000-0000-0000-000000000000")
	if s := ReadSlot(c, env); s == nil || s.Error == "" {
		t.Errorf("unknown PARTUUID should give an error: %+v", s)
	}
}

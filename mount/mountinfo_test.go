package mount

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

const sampleMountinfo = `22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 98:0 /mnt1 /mnt\040with\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue
40 36 0:45 / /x\134y\011z rw - overlay systemd\040confext ro,lowerdir+=/a,lowerdir+=/b
41 22 0:46 / /none rw - tmpfs tmpfs rw
`

func TestParseMountinfo(t *testing.T) {
	got, err := ParseMountinfo(strings.NewReader(sampleMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("got %d entries, want 4", len(got))
	}
	want := Info{ID: 36, Parent: 22, Major: 98, Minor: 0, Root: "/mnt1", Mountpoint: "/mnt with space",
		Options: "rw,noatime", Optional: "master:1 shared:7", FSType: "ext3", Source: "/dev/root",
		SuperOptions: "rw,errors=continue"}
	if got[1] != want {
		t.Errorf("entry 1 = %+v\nwant       %+v", got[1], want)
	}
	if got[2].Mountpoint != "/x\\y\tz" || got[2].Source != "systemd confext" || got[2].Optional != "" {
		t.Errorf("entry 2 = %+v", got[2])
	}
	if got[0].Optional != "shared:1" {
		t.Errorf("entry 0 optional = %q", got[0].Optional)
	}
}

func TestParseMountinfoMalformed(t *testing.T) {
	for _, in := range []string{
		"22 1 0:21 / / rw shared:1 ext4 /dev/vda rw\n", // no separator
		"x 1 0:21 / / rw - ext4 /dev/vda rw\n",
		"22 1 021 / / rw - ext4 /dev/vda rw\n",
		"22 1 0:21 / / rw -\n",
	} {
		if _, err := ParseMountinfo(strings.NewReader(in)); err == nil {
			t.Errorf("ParseMountinfo(%q) succeeded", in)
		}
	}
}

func TestReadMountinfoAndIsMountPoint(t *testing.T) {
	base := testutil.Tmpfs(t)
	mp := filepath.Join(base, "odd name\twith tab")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Mount("tmpfs", mp, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer Unmount(mp, 0)
	infos, err := ReadMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range infos {
		if in.Mountpoint == mp && in.FSType == "tmpfs" {
			found = true
		}
	}
	if !found {
		t.Errorf("%q not in mountinfo", mp)
	}
	if err := os.Mkdir(filepath.Join(mp, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{{mp, true}, {base, true}, {"/", true}, {filepath.Join(mp, "sub"), false}, {filepath.Join(mp, "file"), false}} {
		f, err := os.OpenFile(tc.path, unix.O_PATH, 0)
		if err != nil {
			t.Fatal(err)
		}
		got, err := IsMountPoint(f)
		if err != nil || got != tc.want {
			t.Errorf("IsMountPoint(%q) = %v, %v; want %v", tc.path, got, err, tc.want)
		}
		var self unix.Statx_t
		if err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID|unix.STATX_INO|unix.STATX_TYPE, &self); err != nil {
			t.Fatal(err)
		}
		if self.Mode&unix.S_IFMT == unix.S_IFDIR {
			// The pre-5.8 fallback must agree on directories.
			if got, err := mountPointByParent(int(f.Fd()), tc.path, &self); err != nil || got != tc.want {
				t.Errorf("mountPointByParent(%q) = %v, %v; want %v", tc.path, got, err, tc.want)
			}
		}
		f.Close()
	}
}

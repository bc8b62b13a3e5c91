package extension

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestParseDevnum(t *testing.T) {
	for in, want := range map[string][2]uint32{"0:41\n": {0, 41}, "254:0": {254, 0}, "7:3\nextra": {7, 3}} {
		maj, min, ok := parseDevnum([]byte(in))
		if !ok || maj != want[0] || min != want[1] {
			t.Errorf("parseDevnum(%q) = %d:%d %v", in, maj, min, ok)
		}
	}
	for _, bad := range []string{"", "041", "a:b", "1:"} {
		if _, _, ok := parseDevnum([]byte(bad)); ok {
			t.Errorf("parseDevnum(%q) accepted", bad)
		}
	}
}

func TestOverlayOptions(t *testing.T) {
	params, set, clr := overlayOptions(mutableDefaultOptions)
	if len(params) != 3 || params[0] != "redirect_dir=on" || params[1] != "metacopy=off" || params[2] != "index=off" {
		t.Fatalf("params %v", params)
	}
	if set != unix.MOUNT_ATTR_NOATIME || clr != unix.MOUNT_ATTR__ATIME {
		t.Fatalf("attrs set %#x clr %#x", set, clr)
	}
	params, set, _ = overlayOptions("ro,nosuid,xino=off")
	if len(params) != 1 || set != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID {
		t.Fatalf("params %v set %#x", params, set)
	}
}

// TestWorkName: every run gets its own work dir name (issue 8 item 1: two
// racing refreshes both took the plain name and shared one work dir), and
// only names of that shape or systemd's plain one count as work dirs.
func TestWorkName(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		n := workName("/etc")
		if len(n) != len(".systemd-etc-workdir-")+16 || !strings.HasPrefix(n, ".systemd-etc-workdir-") {
			t.Fatalf("workName = %q", n)
		}
		if seen[n] {
			t.Fatalf("workName repeated %q", n)
		}
		seen[n] = true
		if !isWorkName("/etc", n) {
			t.Fatalf("isWorkName(%q) = false", n)
		}
	}
	for _, n := range []string{".systemd-etc-workdir", ".systemd-usr-workdir-0123456789abcdef"} {
		if want := strings.Contains(n, "etc"); isWorkName("/etc", n) != want {
			t.Errorf("isWorkName(/etc, %q) != %v", n, want)
		}
	}
	for _, n := range []string{"victim", "", ".systemd-etc-workdir-", ".systemd-etc-workdir-0123456789ABCDEF", ".systemd-etc-workdir-0123456789abcdeg", ".systemd-etc-workdir-0123456789abcdef0", "../.systemd-etc-workdir"} {
		if isWorkName("/etc", n) {
			t.Errorf("isWorkName(/etc, %q) = true", n)
		}
	}
}

func TestFormatTableAndJSON(t *testing.T) {
	rows := []HierarchyStatus{{Hierarchy: "/etc", Merged: true, Extensions: []string{"dir1", "sq1"}, Since: 0}}
	var b bytes.Buffer
	if err := WriteStatus(&b, rows, "off"); err != nil {
		t.Fatal(err)
	}
	want := "HIERARCHY EXTENSIONS SINCE\n/etc      dir1       -\n          sq1        \n"
	if b.String() != want {
		t.Fatalf("table:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	rows[0].Since = 1795311506405862
	must(t, WriteStatus(&b, rows, "short"))
	if b.String() != `[{"hierarchy":"/etc","extensions":["dir1","sq1"],"since":1795311506405862}]`+"\n" {
		t.Fatalf("short: %q", b.String())
	}
	b.Reset()
	must(t, WriteStatus(&b, []HierarchyStatus{{Hierarchy: "/etc"}}, "pretty"))
	if b.String() != "[\n\t{\n\t\t\"hierarchy\" : \"/etc\",\n\t\t\"extensions\" : [],\n\t\t\"since\" : null\n\t}\n]\n" {
		t.Fatalf("pretty: %q", b.String())
	}
}

func TestDetectFSAndGPT(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, off int64, magic []byte) *os.File {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		must(t, err)
		must(t, f.Truncate(8192))
		_, err = f.WriteAt(magic, off)
		must(t, err)
		return f
	}
	for _, c := range []struct {
		name  string
		off   int64
		magic []byte
		want  string
	}{
		{"sq", 0, []byte("hsqs"), "squashfs"},
		{"er", 1024, []byte{0xe2, 0xe1, 0xf5, 0xe0}, "erofs"},
		{"ext", 1080, []byte{0x53, 0xef}, "ext4"},
		{"none", 0, []byte("junk"), ""},
	} {
		f := mk(c.name, c.off, c.magic)
		got, err := image.DetectFS(f, 0)
		f.Close()
		if err != nil || got != c.want {
			t.Errorf("%s: %q %v, want %q", c.name, got, err, c.want)
		}
	}
	testutil.RequireTool(t, "sgdisk")
	p := filepath.Join(dir, "disk.raw")
	f, err := os.Create(p)
	must(t, err)
	must(t, f.Truncate(4<<20))
	f.Close()
	// The native architecture's usr and root types (x86-64 or arm64, from
	// the one architecture table), so the case runs on both.
	types, ok := image.TypesFor(image.NativeArchitecture())
	if !ok {
		t.Fatalf("no partition types for %s", image.NativeArchitecture())
	}
	if out, err := exec.Command("sgdisk", "-n", "1:2048:4095", "-t", "1:"+types.Usr,
		"-n", "2:4096:0", "-t", "2:"+types.Root, p).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v %s", err, out)
	}
	f, err = os.Open(p)
	must(t, err)
	defer f.Close()
	// The one picker (the dissection rules): a confext takes the root
	// partition (number 2), never usr; these partitions hold no file
	// system, which the dissection names.
	_, err = image.Dissect(f, image.SizeOf(f), image.DissectOptions{AllowUsr: false})
	if err == nil || !strings.Contains(err.Error(), "root partition 2 holds no") {
		t.Fatalf("confext pick: %v", err)
	}
	if _, err := image.Dissect(mk("nogpt", 0, []byte("x")), 8192, image.DissectOptions{AllowUsr: true}); !errors.Is(err, image.ErrNoFilesystem) {
		t.Fatalf("no GPT: %v", err)
	}
}

package record

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil/roottest"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

func statField(t *testing.T, format, p string) string {
	t.Helper()
	testutil.RequireTool(t, "stat")
	out, err := exec.Command("stat", "-c", format, p).Output()
	if err != nil {
		t.Fatalf("stat -c %s %s: %v", format, p, err)
	}
	return strings.TrimSpace(string(out))
}

func mustDiscover(t *testing.T, dir string, c *config.Class) map[string]discover.Image {
	t.Helper()
	imgs, err := discover.Discover(roottest.Open(t, dir), c, false)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]discover.Image{}
	for _, i := range imgs {
		m[i.Name] = i
	}
	return m
}

func TestImageIdentityDirectoryAndRaw(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{
		"var/lib/confexts/d1/etc/a": "x",
		"usr/lib/confexts/sq.raw":   "not really squashfs",
		"run/confexts/link":         "->/var/lib/confexts/d1",
	})
	root := roottest.Open(t, dir)
	imgs := mustDiscover(t, dir, config.Confext)

	d1, err := ImageIdentity(root, imgs["d1"], IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostD1 := filepath.Join(dir, "var/lib/confexts/d1")
	ino, _ := strconv.ParseUint(statField(t, "%i", hostD1), 10, 64)
	if d1.Path != "/var/lib/confexts/d1" || d1.Inode != ino || d1.Mtime != 0 || d1.VerityHash != "" {
		t.Errorf("d1 identity %+v (stat inode %d)", d1, ino)
	}
	if birth := statField(t, "%W", hostD1); birth != "0" {
		if got := strconv.FormatUint(d1.Crtime/1_000_000, 10); got != birth {
			t.Errorf("crtime %d s, stat %%W %s", d1.Crtime/1_000_000, birth)
		}
	}
	if !d1.HasHandle {
		t.Fatalf("no file handle on %s", hostD1)
	}
	var sfs unix.Statfs_t
	_ = unix.Statfs(hostD1, &sfs)
	if sfs.Type == unix.EXT4_SUPER_MAGIC {
		// Same shape as the golden origin files: type 1, 8 bytes = ino32 LE + generation.
		h, _ := hex.DecodeString(d1.Handle)
		if d1.HandleType != 1 || len(d1.Handle) != 16 || binary.LittleEndian.Uint32(h) != uint32(ino) || d1.Handle != strings.ToLower(d1.Handle) {
			t.Errorf("ext4 handle %d %q, inode %#x", d1.HandleType, d1.Handle, ino)
		}
	}
	f, _ := os.Open(hostD1)
	mid, _, err := mount.StatxMountID(int(f.Fd()))
	f.Close()
	if err != nil || mid != d1.OnMountID {
		t.Errorf("onMountId %d, statx %d %v", d1.OnMountID, mid, err)
	}

	// The symlinked image has the same identity as its target, path included.
	ln, err := ImageIdentity(root, imgs["link"], IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln.Name = "d1"
	if ln != d1 {
		t.Errorf("symlink identity %+v differs from target %+v", ln, d1)
	}

	sq, err := ImageIdentity(root, imgs["sq"], IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "usr/lib/confexts/sq.raw"), &st); err != nil {
		t.Fatal(err)
	}
	if want := uint64(st.Mtim.Sec)*1e6 + uint64(st.Mtim.Nsec)/1000; sq.Mtime != want || sq.Mtime == 0 {
		t.Errorf("raw mtime %d, want %d", sq.Mtime, want)
	}
	if sq.Path != "/usr/lib/confexts/sq.raw" || !sq.HasHandle || sq.Handle == d1.Handle {
		t.Errorf("raw identity %+v", sq)
	}

	// The record for both has the fields and order of the golden files.
	out := string(Origin{Mode: config.MutableYes, MutableDirs: map[string]string{"/etc": "/etc"}, Extensions: []OriginExtension{d1, sq}}.MarshalSystemd())
	for _, k := range []string{`"path" : "/var/lib/confexts/d1",`, `"onMountId" : `, `"fileHandle" : {`, `"type" : `, `"handle" : "`, `"crtime" : `, `"mtime" : 0`} {
		if !strings.Contains(out, k) {
			t.Errorf("origin lacks %s:\n%s", k, out)
		}
	}
}

func TestCrtimeXattr(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"run/confexts/c.raw": ""})
	p := filepath.Join(dir, "run/confexts/c.raw")
	set := func(v uint64) {
		t.Helper()
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		if err := unix.Setxattr(p, "user.crtime_usec", b[:], 0); err != nil {
			testutil.Gate(t, "user xattrs on the test directory's file system: %v", err)
		}
	}
	root := roottest.Open(t, dir)
	img := mustDiscover(t, dir, config.Confext)["c"]
	base, err := ImageIdentity(root, img, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set(1000) // older than the birth time: wins
	if id, _ := ImageIdentity(root, img, IdentityOptions{}); id.Crtime != 1000 {
		t.Errorf("older xattr: crtime %d", id.Crtime)
	}
	if base.Crtime != 0 {
		set(base.Crtime + 5_000_000) // newer than birth: birth wins
		if id, _ := ImageIdentity(root, img, IdentityOptions{}); id.Crtime != base.Crtime {
			t.Errorf("newer xattr: crtime %d, want %d", id.Crtime, base.Crtime)
		}
	}
	set(0) // invalid value ignored
	if id, _ := ImageIdentity(root, img, IdentityOptions{}); id.Crtime != base.Crtime {
		t.Errorf("zero xattr: crtime %d, want %d", id.Crtime, base.Crtime)
	}
}

func TestVerityHashIdentity(t *testing.T) {
	hash := strings.Repeat("AB", 32)
	other := strings.Repeat("cd", 32)
	for _, tc := range []struct {
		name    string
		files   map[string]string
		xattr   string // user.verity.roothash on the image
		env     string
		want    string
		wantErr bool
	}{
		{"none", map[string]string{}, "", "", "", false},
		{"roothash sidecar", map[string]string{"v.roothash": hash + "\n"}, "", "", strings.ToLower(hash), false},
		{"usrhash sidecar", map[string]string{"v.usrhash": other}, "", "", other, false},
		{"roothash before usrhash", map[string]string{"v.roothash": hash, "v.usrhash": other}, "", "", strings.ToLower(hash), false},
		{"xattr before sidecar", map[string]string{"v.roothash": hash}, other, "", other, false},
		{"sidecar disabled", map[string]string{"v.roothash": hash}, other, "0", "", false},
		{"too short", map[string]string{"v.roothash": "abcd"}, "", "", "", true},
		{"bad hex", map[string]string{"v.roothash": "zz" + hash}, "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"var/lib/extensions/v.raw": "img"}
			for k, v := range tc.files {
				files["var/lib/extensions/"+k] = v
			}
			testutil.WriteTree(t, dir, files)
			if tc.xattr != "" {
				if err := unix.Setxattr(filepath.Join(dir, "var/lib/extensions/v.raw"), "user.verity.roothash", []byte(tc.xattr), 0); err != nil {
					testutil.Gate(t, "user xattrs on the test directory's file system: %v", err)
				}
			}
			root := roottest.Open(t, dir)
			img := mustDiscover(t, dir, config.Sysext)["v"]
			id, err := ImageIdentity(root, img, IdentityOptions{Getenv: func(string) string { return tc.env }})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted: %+v", id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.VerityHash != tc.want {
				t.Fatalf("verityHash %q, want %q", id.VerityHash, tc.want)
			}
			if tc.want != "" && (id.HasHandle || id.OnMountID != 0 || id.Crtime != 0 || id.Mtime != 0) {
				t.Errorf("weak identifiers recorded next to verityHash: %+v", id)
			}
			if tc.want == "" && !id.HasHandle {
				t.Errorf("weak identity missing: %+v", id)
			}
		})
	}
	// The GPT seam is consulted only without a sidecar hash.
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"var/lib/extensions/g.raw": "img"})
	called := false
	id, err := ImageIdentity(roottest.Open(t, dir), mustDiscover(t, dir, config.Sysext)["g"], IdentityOptions{
		EmbeddedVerity: func(discover.Image, *os.File) ([]byte, error) { called = true; return bytes.Repeat([]byte{1}, 32), nil },
	})
	if err != nil || !called || id.VerityHash != strings.Repeat("01", 32) {
		t.Errorf("embedded verity seam: %+v %v called=%v", id, err, called)
	}
}

func TestDirFingerprint(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{
		"var/lib/confexts/kde/etc/a.conf":     "value=1\n",
		"var/lib/confexts/kde/etc/sub/b.conf": "b\n",
		"var/lib/confexts/kde/etc/link":       "->a.conf",
	})
	root := roottest.Open(t, dir)
	img := mustDiscover(t, dir, config.Confext)["kde"]
	fp := func() string {
		t.Helper()
		s, err := DirFingerprint(root, img)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := fp()
	if again := fp(); again != before {
		t.Fatal("fingerprint not stable")
	}
	id1, _ := ImageIdentity(root, img, IdentityOptions{})
	a := filepath.Join(dir, "var/lib/confexts/kde/etc/a.conf")
	st, _ := os.Stat(a)
	time.Sleep(10 * time.Millisecond)
	// In-place edit with the same size and the old mtime restored.
	if err := os.WriteFile(a, []byte("value=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(a, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	id2, _ := ImageIdentity(root, img, IdentityOptions{})
	if id1 != id2 {
		t.Fatalf("systemd's identity changed (%+v -> %+v); the test premise (issue 41523) is gone", id1, id2)
	}
	afterEdit := fp()
	if afterEdit == before {
		t.Fatal("in-place edit with restored mtime not noticed")
	}
	if err := os.Chmod(filepath.Join(dir, "var/lib/confexts/kde/etc/sub/b.conf"), 0o600); err != nil {
		t.Fatal(err)
	}
	afterChmod := fp()
	if afterChmod == afterEdit {
		t.Fatal("chmod in a subdirectory not noticed")
	}
	if err := os.WriteFile(filepath.Join(dir, "var/lib/confexts/kde/etc/sub/new"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if fp() == afterChmod {
		t.Fatal("new file not noticed")
	}
	if _, err := DirFingerprint(root, discover.Image{Type: discover.ImageRaw, Path: "/x.raw"}); err == nil {
		t.Error("raw image fingerprinted")
	}
}

// TestImageIdentityMountIDs runs on a fresh tmpfs and a bind mount of it
// (root tier): the same directory seen through two mounts has the same
// handle but a different onMountId, which is why systemd's origin changes
// when the backing file system is remounted or re-bound (not when moved).
func TestImageIdentityMountIDs(t *testing.T) {
	testutil.RequireRoot(t)
	fsDir := testutil.Tmpfs(t)
	testutil.WriteTree(t, fsDir, map[string]string{"run/confexts/t/etc/x": "1", "bind/": ""})
	root := roottest.Open(t, fsDir)
	img := mustDiscover(t, fsDir, config.Confext)["t"]
	a, err := ImageIdentity(root, img, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(fsDir)
	tmpfsID, unique, _ := mount.StatxMountID(int(f.Fd()))
	f.Close()
	if !a.HasHandle || a.OnMountID != tmpfsID {
		t.Fatalf("tmpfs identity %+v, mount id %d (unique=%v)", a, tmpfsID, unique)
	}
	bindTarget := filepath.Join(fsDir, "bind")
	if err := unix.Mount(filepath.Join(fsDir, "run/confexts"), bindTarget, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(bindTarget, unix.MNT_DETACH)
	testutil.WriteTree(t, fsDir, map[string]string{"var/lib/confexts/": ""})
	if err := os.Symlink("/bind/t", filepath.Join(fsDir, "var/lib/confexts/viabind")); err != nil {
		t.Fatal(err)
	}
	viaBind := mustDiscover(t, fsDir, config.Confext)["viabind"]
	b, err := ImageIdentity(root, viaBind, IdentityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Handle != a.Handle || b.OnMountID == a.OnMountID || b.Path != "/bind/t" {
		t.Errorf("through bind mount: %+v vs %+v", b, a)
	}
}

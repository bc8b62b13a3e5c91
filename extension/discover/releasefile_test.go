package discover

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil/roottest"
)

func openTree(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func setXattr(t *testing.T, p, v string) {
	t.Helper()
	if err := unix.Lsetxattr(p, StrictXattr, []byte(v), 0); err != nil {
		testutil.Gate(t, "user xattrs on the test directory's file system: %v", err)
	}
}

func TestReadReleaseFile(t *testing.T) {
	const rd = "etc/extension-release.d/"
	for _, tc := range []struct {
		name    string
		files   map[string]string
		xattrs  map[string]string
		image   string
		relax   bool
		want    string // path read, "" = not found
		wantErr error
	}{
		{"exact", map[string]string{rd + "extension-release.foo": "ID=a\n", rd + "extension-release.bar": "ID=b\n"}, nil, "foo", false, "/etc/extension-release.d/extension-release.foo", nil},
		{"exact symlink resolved inside image", map[string]string{rd + "extension-release.foo": "->/real", "real": "ID=a\n"}, nil, "foo", false, "/etc/extension-release.d/extension-release.foo", nil},
		{"base name fallback", map[string]string{rd + "extension-release.foo": "ID=a\n"}, nil, "foo_1.2+3", false, "/etc/extension-release.d/extension-release.foo", nil},
		{"mismatch without xattr", map[string]string{rd + "extension-release.other": "ID=a\n"}, nil, "foo", false, "", fs.ErrNotExist},
		{"mismatch with strict=0", map[string]string{rd + "extension-release.other": "ID=a\n"}, map[string]string{rd + "extension-release.other": "0"}, "foo", false, "/etc/extension-release.d/extension-release.other", nil},
		{"mismatch with strict=false", map[string]string{rd + "extension-release.other": "ID=a\n"}, map[string]string{rd + "extension-release.other": "false"}, "foo", false, "/etc/extension-release.d/extension-release.other", nil},
		{"strict=1 skipped", map[string]string{rd + "extension-release.other": "ID=a\n"}, map[string]string{rd + "extension-release.other": "1"}, "foo", false, "", fs.ErrNotExist},
		{"strict garbage skipped", map[string]string{rd + "extension-release.other": "ID=a\n"}, map[string]string{rd + "extension-release.other": "maybe"}, "foo", false, "", fs.ErrNotExist},
		{"two candidates", map[string]string{rd + "extension-release.foo": "ID=a\n", rd + "extension-release.x": "ID=b\n"}, map[string]string{rd + "extension-release.x": "no"}, "foo_2", false, "", ErrReleaseNotUnique},
		{"relaxed accepts any single", map[string]string{rd + "extension-release.other": "ID=a\n"}, nil, "foo", true, "/etc/extension-release.d/extension-release.other", nil},
		{"relaxed two", map[string]string{rd + "extension-release.a": "", rd + "extension-release.b": ""}, nil, "foo", true, "", ErrReleaseNotUnique},
		{"fallback symlink ignored", map[string]string{rd + "extension-release.foo": "->/real", "real": "ID=a\n"}, nil, "foo_1", false, "", fs.ErrNotExist},
		{"no release dir", map[string]string{"etc/hostname": "x"}, nil, "foo", false, "", fs.ErrNotExist},
		{"invalid name", map[string]string{}, nil, ".#foo", false, "", unix.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			testutil.WriteTree(t, dir, tc.files)
			for p, v := range tc.xattrs {
				setXattr(t, filepath.Join(dir, p), v)
			}
			rf, err := ReadReleaseFile(openTree(t, dir), config.Confext, tc.image, tc.relax)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || rf.Path != tc.want || rf.Fields["ID"] == "" {
				t.Fatalf("got %+v %v, want %s", rf, err, tc.want)
			}
		})
	}
}

func TestReadReleaseFileSysextDir(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"usr/lib/extension-release.d/extension-release.s": "ID=_any\nSYSEXT_LEVEL=1\n"})
	rf, err := ReadReleaseFile(openTree(t, dir), config.Sysext, "s", false)
	if err != nil || rf.Fields["SYSEXT_LEVEL"] != "1" {
		t.Fatalf("%+v %v", rf, err)
	}
	if _, err := ReadReleaseFile(openTree(t, dir), config.Confext, "s", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("confext must not read the sysext release dir: %v", err)
	}
}

func TestHasForbiddenContent(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"usr/lib/dangling": "->/nowhere", "etc/os-release": "ID=x\n"})
	for _, c := range []*config.Class{config.Sysext, config.Confext} {
		if bad, err := HasForbiddenContent(openTree(t, dir), c); err != nil || bad {
			t.Fatalf("%s clean tree: %v %v", c.Name, bad, err)
		}
	}
	testutil.WriteTree(t, dir, map[string]string{"usr/lib/os-release": "->/usr/lib/real", "usr/lib/real": "ID=y\n"})
	if bad, err := HasForbiddenContent(openTree(t, dir), config.Sysext); err != nil || !bad {
		t.Fatalf("sysext with os-release: %v %v", bad, err)
	}
	if bad, _ := HasForbiddenContent(openTree(t, dir), config.Confext); bad {
		t.Fatal("confext may carry /usr/lib/os-release")
	}
}

func TestImageNames(t *testing.T) {
	for s, want := range map[string]bool{"foo": true, "foo bar,baz:1": true, "ünï": true, "": false, ".": false, "..": false,
		"a/b": false, ".#tmp": false, "a\x01": false, "a\x7f": false, "\xff": false, ".hidden": true} {
		if got := ImageNameIsValid(s); got != want {
			t.Errorf("ImageNameIsValid(%q) = %v", s, got)
		}
	}
	for in, want := range map[string]string{"foo": "foo", "foo_1.2": "foo", "foo+3": "foo", "foo.raw": "foo",
		"foo_1.confext.raw": "foo", "foo.sysext.raw": "foo", "a.b": "a.b"} {
		if got := ReleaseBaseName(in); got != want {
			t.Errorf("ReleaseBaseName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadHostReleaseAndOptions(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"usr/lib/os-release": "ID=flatcar\nVERSION_ID=4000.0.0\n", "alt": "ID=alt\n"})
	root := roottest.Open(t, dir)
	h, err := LoadHostRelease(root, func(string) string { return "" })
	if err != nil || h.ID != "flatcar" {
		t.Fatalf("%+v %v", h, err)
	}
	h, err = LoadHostRelease(root, func(k string) string {
		if k == "SYSTEMD_OS_RELEASE" {
			return "/alt"
		}
		return ""
	})
	if err != nil || h.ID != "alt" {
		t.Fatalf("override: %+v %v", h, err)
	}
	o := config.Confext.ReleaseOptions(true)
	if o.ScopeKey != "CONFEXT_SCOPE" || o.LevelKey != "CONFEXT_LEVEL" || o.Scope != "initrd" || o.Arch == "" {
		t.Errorf("options %+v", o)
	}
	if config.Sysext.ReleaseOptions(false).Scope != "system" {
		t.Error("system scope")
	}
}

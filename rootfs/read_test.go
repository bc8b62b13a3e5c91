package rootfs

import (
	"errors"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// confinedFixture is a root next to an "outside" directory that escaping
// links try to reach.
func confinedFixture(t *testing.T) (*Root, string, string) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	tree(t, base, map[string]string{
		"outside/secret":             "host secret",
		"root/etc/target":            "in root",
		"root/secret":                "root's own secret",
		"root/etc/rel-escape@":       "../../../../outside/secret",
		"root/etc/abs@":              "/etc/target",
		"root/etc/abs-escape@":       "/../outside/secret",
		"root/etc/dir-escape@":       "../../outside",
		"root/etc/chain@":            "abs",
		"root/etc/loop@":             "loop",
		"root/usr/lib/os-release":    "ID=test",
		"root/etc/os-release@":       "../usr/lib/os-release",
		"root/run/resolv.conf":       "nameserver 1",
		"root/etc/resolv.conf@":      "/run/resolv.conf",
		"root/etc/dangling@":         "/nowhere",
		"root/etc/extensions/":       "",
		"root/etc/extensions/x.raw@": "/oem/sysext/x.raw",
	})
	return openRoot(t, root), root, base
}

func TestResolveStaysInRoot(t *testing.T) {
	r, _, _ := confinedFixture(t)
	for _, tc := range []struct{ name, want string }{
		{"/etc/abs", "/etc/target"},
		{"etc/chain", "/etc/target"},
		{"/etc/os-release", "/usr/lib/os-release"},
		{"/etc/resolv.conf", "/run/resolv.conf"},
		{"/etc/rel-escape", "/outside/secret"}, // dangling inside the root
		{"/../../etc/abs", "/etc/target"},
		{"/", "/"},
		{"", "/"},
	} {
		got, err := r.Resolve(tc.name)
		if tc.want == "/outside/secret" {
			// The in-root target does not exist: it must fail, not resolve
			// to the host's outside/secret.
			if err == nil {
				t.Errorf("Resolve(%q) = %q, want ENOENT (escape confined)", tc.name, got)
			} else if !errors.Is(err, unix.ENOENT) {
				t.Errorf("Resolve(%q): %v, want ENOENT", tc.name, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestEscapingLinksNeverReadOutside(t *testing.T) {
	r, root, _ := confinedFixture(t)
	for _, name := range []string{"/etc/rel-escape", "/etc/abs-escape", "/etc/dir-escape/secret", "../outside/secret", "/etc/../../outside/secret"} {
		b, err := r.ReadFile(name)
		if err == nil && string(b) == "host secret" {
			t.Errorf("ReadFile(%q) read outside the root", name)
		}
	}
	// With a secret placed where the confined resolution lands, the escape
	// links read that one: proof that ".." stopped at the root.
	tree(t, root, map[string]string{"outside/secret": "confined"})
	b, err := r.ReadFile("/etc/rel-escape")
	if err != nil || string(b) != "confined" {
		t.Errorf("ReadFile(rel-escape) = %q, %v; want the in-root outside/secret", b, err)
	}
}

func TestReadHelpers(t *testing.T) {
	r, _, _ := confinedFixture(t)
	if s, err := r.Readlink("/etc/extensions/x.raw"); err != nil || s != "/oem/sysext/x.raw" {
		t.Errorf("Readlink = %q, %v", s, err)
	}
	st, err := r.Lstat("/etc/abs")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("Lstat(link) mode %#o, %v", st.Mode, err)
	}
	st, err = r.Stat("/etc/abs")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("Stat(link) mode %#o, %v", st.Mode, err)
	}
	for name, want := range map[string]bool{"/etc/dangling": true, "/etc/missing": false, "/etc": true} {
		if got, err := r.Exists(name); err != nil || got != want {
			t.Errorf("Exists(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := r.Exists("/etc/abs/below-a-file"); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("Exists below a file: %v, want ENOTDIR", err)
	}
	if _, err := r.Stat("/etc/loop"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("Stat(loop): %v, want ELOOP", err)
	}
	ents, err := r.ReadDir("/etc/extensions")
	if err != nil || len(ents) != 1 || ents[0].Name() != "x.raw" {
		t.Errorf("ReadDir = %v, %v", ents, err)
	}
	f, err := r.OpenPath("/etc/abs")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fst unix.Stat_t
	must(t, unix.Fstat(int(f.Fd()), &fst))
	if fst.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("OpenPath followed the link")
	}
	if _, err := r.OpenDir("/etc/abs"); !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("OpenDir(symlink): %v, want ENOTDIR", err)
	}
	d, err := r.OpenDir("/etc/extensions")
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if r.Path() == "" || r.Fd() < 0 {
		t.Errorf("Path/Fd")
	}
}

func TestNamesWithNULRejected(t *testing.T) {
	r, _, _ := confinedFixture(t)
	for _, err := range []error{
		func() error { _, err := r.ReadFile("etc/target\x00x"); return err }(),
		r.WriteFileAtomic("etc/a\x00b", nil, 0o644),
		r.SymlinkAtomic("x\x00y", "etc/l"),
		r.MkdirAll("a\x00/b", 0o755),
		r.Remove("etc\x00"),
	} {
		if !errors.Is(err, unix.EINVAL) {
			t.Errorf("NUL name: %v, want EINVAL", err)
		}
	}
	if err := r.Remove("/"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Remove(/): %v, want EINVAL", err)
	}
	if err := r.Remove("etc/.."); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Remove(etc/..): %v, want EINVAL", err)
	}
}

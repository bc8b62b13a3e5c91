package boot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureMutableLink(t *testing.T) {
	root := t.TempDir()
	var r RootDir
	if st, err := r.EnsureMutableLink(root, true); err != nil || st != LinkWouldCreate {
		t.Fatalf("dry run: %v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "var")); !os.IsNotExist(err) {
		t.Fatalf("dry run created something: %v", err)
	}
	if st, err := r.EnsureMutableLink(root, false); err != nil || st != LinkCreated {
		t.Fatalf("first: %v %v", st, err)
	}
	link := filepath.Join(root, "var/lib/extensions.mutable/etc")
	if tgt, err := os.Readlink(link); err != nil || tgt != "/etc" {
		t.Fatalf("link %q %v", tgt, err)
	}
	if fi, _ := os.Stat(filepath.Join(root, "var/lib/extensions.mutable")); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode())
	}
	if st, err := r.EnsureMutableLink(root, false); err != nil || st != LinkPresent {
		t.Fatalf("rerun: %v %v", st, err)
	}
}

func TestEnsureMutableLinkKeepsUserDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "var/lib/extensions.mutable/etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "mine"), []byte("x"), 0o644)
	if st, err := (RootDir{}).EnsureMutableLink(root, false); err != nil || st != LinkForeign {
		t.Fatalf("%v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mine")); err != nil {
		t.Fatal("user file lost")
	}
}

func TestEnsureMutableLinkStaysInRoot(t *testing.T) {
	// /var is an absolute symlink inside the root: it must resolve to
	// ROOT/data/var, never to the host's /data/var.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "data/var"), 0o755)
	os.Symlink("/data/var", filepath.Join(root, "var"))
	if st, err := (RootDir{}).EnsureMutableLink(root, false); err != nil || st != LinkCreated {
		t.Fatalf("%v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "data/var/lib/extensions.mutable/etc")); err != nil {
		t.Fatal(err)
	}
}

func TestSysextMasked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(unit string)
		want  bool
	}{
		{"absent", func(string) {}, false},
		{"dev null", func(u string) { os.Symlink("/dev/null", u) }, true},
		{"dev null unclean", func(u string) { os.Symlink("//dev/./null", u) }, true},
		{"empty file", func(u string) { os.WriteFile(u, nil, 0o644) }, true},
		{"real unit", func(u string) { os.WriteFile(u, []byte("[Unit]\n"), 0o644) }, false},
		{"link to unit", func(u string) {
			os.WriteFile(filepath.Join(filepath.Dir(u), "x.service"), []byte("[Unit]\n"), 0o644)
			os.Symlink("/etc/systemd/system/x.service", u)
		}, false},
		{"link to empty in root", func(u string) {
			os.WriteFile(filepath.Join(filepath.Dir(u), "empty"), nil, 0o644)
			os.Symlink("/etc/systemd/system/empty", u)
		}, true},
		{"dangling", func(u string) { os.Symlink("/nowhere", u) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			d := filepath.Join(root, "etc/systemd/system")
			os.MkdirAll(d, 0o755)
			tc.setup(filepath.Join(d, "systemd-sysext.service"))
			got, err := (RootDir{}).SysextMasked(root)
			if err != nil || got != tc.want {
				t.Fatalf("got %v %v, want %v", got, err, tc.want)
			}
		})
	}
	if got, err := (RootDir{}).SysextMasked(t.TempDir()); err != nil || got {
		t.Fatalf("no etc: %v %v", got, err)
	}
}

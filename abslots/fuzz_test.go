package abslots

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// enabledSeeds are enabled-sysext.conf texts from the fixtures and the
// list tests.
var enabledSeeds = []string{
	"zfs\n",
	"# built-in list\nzfs\n",
	"# header\n\nzfs   # trailing\n-docker\n  spaced  \nzfs\nfoo bar\n#-commented-out\n-ghost # comment after opt-out\n",
	"docker\npython\n-notanoptout\nghost\n",
	"../evil\n/abs\na\x00b\n-\n--x\n\xff\n",
}

// FuzzEnabledList: parsing and merging the enabled lists never panics,
// never yields an empty name or one with white space or '#', and a name
// opted out in an opt-out file is never enabled.
func FuzzEnabledList(f *testing.F) {
	for _, a := range enabledSeeds {
		for _, b := range enabledSeeds[:2] {
			f.Add([]byte(a), []byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, etc, usr []byte) {
		var files []enabledFile
		for _, x := range []struct {
			name string
			body []byte
		}{{"/etc/l", etc}, {"/usr/l", usr}} {
			n, o, err := parseEnabled(bytes.NewReader(x.body))
			if err != nil {
				return // a line longer than bufio's limit
			}
			for _, w := range append(n, o...) {
				if strings.ContainsAny(w, " \t\n\r#") {
					t.Fatalf("name %q", w)
				}
			}
			for _, w := range n {
				if w == "" || strings.HasPrefix(w, "-") {
					t.Fatalf("name %q", w)
				}
			}
			files = append(files, enabledFile{Source: x.name, Names: n, Optouts: o})
		}
		l := mergeEnabled(files, []string{"/etc/l", "/usr/l"}, []string{"/etc/l"})
		out := map[string]bool{}
		for _, o := range l.Optouts {
			out[o.Name] = true
		}
		seen := map[string]bool{}
		for _, n := range l.Names {
			if out[n.Name] || seen[n.Name] {
				t.Fatalf("%q enabled though opted out or twice", n.Name)
			}
			seen[n.Name] = true
		}
	})
}

// FuzzConfig: any abslots.toml either fails to decode/validate with an
// error naming the file, or gives a layout that MakePlan handles.
func FuzzConfig(f *testing.F) {
	f.Add(DefaultTOML())
	if b, err := os.ReadFile("testdata/acme.toml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("version_key = \"VERSION_ID\"\n[oem]\nstores = []\n"))
	f.Add([]byte("[extensions]\nimage = \"../{NAME}.raw\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := DefaultConfig()
		if err := c.Decode(bytes.NewReader(data), "fuzz.toml"); err != nil {
			if !strings.Contains(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			return
		}
		MakePlan(c, &Facts{Version: "1.0", OEMID: "x", ActiveFlag: true, Files: map[string]FileFact{}})
	})
}

// FuzzPlan gathers facts from a root whose os-release, OEM release,
// enabled lists and migration list are fuzzed, and checks the plan: every
// path it would touch is absolute and clean, links are made only in the
// link dir, images are moved only between the stores, nothing removes "/".
func FuzzPlan(f *testing.F) {
	f.Add([]byte("4000.0.0"), []byte("ID=qemu\n"), []byte("zfs\n-podman\n"), []byte("podman\nzfs\n"), []byte("/oem/bin/old-agent\n/etc/systemd/system/multi-user.target.wants/oem-cloudinit.service\n"))
	f.Add([]byte("1.0"), []byte("ID=../x\n"), []byte("../a\n"), []byte(""), []byte("relative\n/\n//\n/../..\n"))
	f.Add([]byte("\"4000\""), []byte("ID=\"a b\"\n"), []byte("a/b\n"), []byte("x\x01\n"), []byte("/usr/../etc\n"))
	cfg := DefaultConfig()
	// A tmpfs when there is one: file system calls dominate each run.
	base, err := os.MkdirTemp("/dev/shm", "abslots-fuzz-")
	if err != nil {
		base = f.TempDir()
	} else {
		f.Cleanup(func() { os.RemoveAll(base) })
	}
	f.Fuzz(func(t *testing.T, version, oemRelease, etcList, usrList, migration []byte) {
		dir := filepath.Join(base, "root")
		os.RemoveAll(dir)
		put := func(p string, b []byte) {
			full := filepath.Join(dir, p)
			os.MkdirAll(filepath.Dir(full), 0o755)
			os.WriteFile(full, b, 0o644)
		}
		put("usr/lib/os-release", append([]byte("ID=flatcar\nVERSION="), version...))
		put("oem/oem-release", oemRelease)
		put("etc/flatcar/enabled-sysext.conf", etcList)
		put("usr/share/flatcar/enabled-sysext.conf", usrList)
		os.MkdirAll(filepath.Join(dir, "oem/sysext"), 0o755)
		os.MkdirAll(filepath.Join(dir, "usr/share/flatcar/oems"), 0o755)
		if ids, err := os.ReadFile(filepath.Join(dir, "oem/oem-release")); err == nil {
			// Flags and the migration list for whatever ID the file gives,
			// when that is a usable file name at all.
			for _, l := range strings.Split(string(ids), "\n") {
				if id, ok := strings.CutPrefix(l, "ID="); ok && id != "" && !strings.ContainsAny(id, "/\x00") && id != "." && id != ".." {
					put("oem/sysext/active-oem-"+id, nil)
					put("oem/sysext/migrate-oem-"+id, nil)
					put("usr/share/flatcar/oems/"+id, migration)
				}
			}
		}
		r, err := rootfs.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		p := MakePlan(cfg, Gather(RootFS{r}, cfg))
		checkPath := func(a Action, what, p string) {
			if p == "" {
				return
			}
			if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
				t.Fatalf("%s action %s %q is not an absolute clean path below /: %+v", a.Op, what, p, a)
			}
		}
		inStores := func(p string) bool {
			for _, s := range append(append([]string(nil), cfg.OEM.Stores...), cfg.Extensions.Store) {
				if path.Dir(p) == s {
					return true
				}
			}
			return false
		}
		for _, a := range p.Actions {
			for _, x := range append(append([]string{a.Path, a.Src, a.Dst, a.Target}, a.Dsts...), a.Targets...) {
				checkPath(a, "path", x)
			}
			switch a.Op {
			case OpSymlink, OpUnlink:
				if path.Dir(a.Path) != cfg.LinkDir {
					t.Fatalf("link outside %s: %+v", cfg.LinkDir, a)
				}
			case OpMove, OpPlace:
				for _, x := range append([]string{a.Src, a.Dst}, a.Dsts...) {
					if x != "" && !inStores(x) {
						t.Fatalf("move outside the stores: %+v", a)
					}
				}
			}
		}
	})
}

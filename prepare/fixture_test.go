package prepare

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// ent is one entry of a fixture tree. Kind: f file (data = content), d
// directory, l symlink (data = target), h hard link (data = the existing
// path it links to), c character device (rdev), p fifo.
type ent struct {
	path  string
	kind  byte
	data  string
	mode  uint32 // 0: 0644 files, 0755 dirs
	uid   int
	gid   int
	rdev  uint64
	xattr map[string]string
	acl   string // setfacl -m spec
	dacl  string // setfacl -d -m spec (directories)
}

// writeEnts creates the entries below dir in order (parents first).
func writeEnts(t testing.TB, dir string, ents []ent) {
	t.Helper()
	for _, e := range ents {
		p := filepath.Join(dir, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := e.mode
		var err error
		switch e.kind {
		case 'f':
			if mode == 0 {
				mode = 0o644
			}
			err = os.WriteFile(p, []byte(e.data), 0o600)
		case 'd':
			if mode == 0 {
				mode = 0o755
			}
			err = os.Mkdir(p, 0o700)
			if os.IsExist(err) {
				err = nil
			}
		case 'l':
			err = os.Symlink(e.data, p)
		case 'h':
			err = os.Link(filepath.Join(dir, e.data), p)
		case 'c':
			err = unix.Mknod(p, unix.S_IFCHR|0o600, int(e.rdev))
			if mode == 0 {
				mode = 0o600
			}
		case 'p':
			err = unix.Mkfifo(p, 0o600)
			if mode == 0 {
				mode = 0o644
			}
		default:
			t.Fatalf("bad kind %c", e.kind)
		}
		if err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
		if e.kind == 'h' {
			continue
		}
		if err := os.Lchown(p, e.uid, e.gid); err != nil {
			t.Fatal(err)
		}
		if e.kind != 'l' {
			if err := unix.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range e.xattr {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
				t.Fatalf("setxattr %s %s: %v", p, k, err)
			}
		}
		if e.acl != "" {
			setfacl(t, p, "-m", e.acl)
		}
		if e.dacl != "" {
			setfacl(t, p, "-d", "-m", e.dacl)
		}
	}
}

func setfacl(t testing.TB, p string, args ...string) {
	t.Helper()
	out, err := exec.Command("setfacl", append(args, p)...).CombinedOutput()
	if err != nil {
		t.Fatalf("setfacl %v %s: %v: %s", args, p, err, out)
	}
}

// snapshot describes every entry below dir (except the skipped top-level
// names): type, mode, owner, device number, size and content hash, link
// target, every xattr but the SELinux label (ACLs included), and which
// names share an inode.
func snapshot(t testing.TB, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	var walk func(rel string)
	walk = func(rel string) {
		p := filepath.Join(dir, rel)
		ents, err := os.ReadDir(p)
		if err != nil {
			t.Fatalf("readdir %s: %v", p, err)
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			r := rel + "/" + e.Name()
			skipped := false
			for _, s := range skip {
				if r == s {
					skipped = true
				}
			}
			if skipped {
				continue
			}
			fp := filepath.Join(dir, r)
			var st unix.Stat_t
			if err := unix.Lstat(fp, &st); err != nil {
				t.Fatal(err)
			}
			d := fmt.Sprintf("type=%o mode=%o uid=%d gid=%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				b, err := os.ReadFile(fp)
				if err != nil {
					t.Fatal(err)
				}
				d += fmt.Sprintf(" size=%d sha=%x", len(b), sha256.Sum256(b))
				if st.Nlink > 1 {
					if first, ok := inodes[st.Ino]; ok {
						d += " hardlink-of=" + first
					} else {
						inodes[st.Ino] = r
					}
					d += fmt.Sprintf(" nlink=%d", st.Nlink)
				}
			case unix.S_IFLNK:
				l, _ := os.Readlink(fp)
				d += " target=" + l
			case unix.S_IFCHR, unix.S_IFBLK:
				d += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			case unix.S_IFDIR:
				defer walk(r)
			}
			d += xattrs(t, fp)
			out[r] = d
		}
	}
	walk("")
	return out
}

func xattrs(t testing.TB, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var names []string
	for _, k := range strings.Split(string(buf[:n]), "\x00") {
		// trusted.overlay.uuid is what the kernel writes on an overlay's
		// upper root when one is mounted (the script mounts its own).
		if k != "" && k != "security.selinux" && k != "trusted.overlay.uuid" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var s strings.Builder
	for _, k := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, k, v)
		if err != nil {
			continue
		}
		fmt.Fprintf(&s, " %s=%x", k, v[:m])
	}
	return s.String()
}

// diffSnap lists the differences between two snapshots.
func diffSnap(want, got map[string]string) string {
	var keys []string
	seen := map[string]bool{}
	for k := range want {
		keys, seen[k] = append(keys, k), true
	}
	for k := range got {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		w, okw := want[k]
		g, okg := got[k]
		switch {
		case !okw:
			fmt.Fprintf(&b, "  + %q %s\n", k, g)
		case !okg:
			fmt.Fprintf(&b, "  - %q %s\n", k, w)
		case w != g:
			fmt.Fprintf(&b, "  ~ %q\n      want %s\n      got  %s\n", k, w, g)
		}
	}
	return b.String()
}

// runOurs runs prepare on root with cfg and returns its result and log.
func runOurs(t testing.TB, root string, cfg Config, dry bool) (*Result, string) {
	t.Helper()
	var log strings.Builder
	res, err := Run(context.Background(), Options{Root: root, Config: cfg, DryRun: dry, Log: oplog.New(oplog.WriterSink{W: &log})})
	if err != nil {
		t.Fatalf("prepare.Run: %v\n%s", err, log.String())
	}
	return res, log.String()
}

func runCmd(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

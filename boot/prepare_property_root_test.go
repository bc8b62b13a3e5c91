package boot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// The prepare step's contract as a property: for every path, what a
// reader of the merged /etc sees after the pre stage (prepare, then the
// real confext merge) is what it sees when the stage runs without the
// prepare step: same type, content, mode, owner, xattrs (POSIX ACLs
// included), link target. The generated cases never touch the duties
// documented as changes (no reset flag, no whiteout list and none of the
// user databases, no machine-id), so every path must be equal.
//
// Each case is a random /etc (files, symlinks, directories, opaque
// directories, whiteouts, user xattrs, access and default ACLs, modes,
// owners) and a random stack of 1-4 directory confexts derived from the
// same base tree, so that many entries are identical to a layer's: some refused (no or a
// wrong extension-release), some shadowed by a higher search directory,
// some versioned (NAME.v/). EXT_SETUP_ROOT_PROPERTY_CASES sets the number
// of cases (default 200; make fuzz runs more), EXT_SETUP_ROOT_PROPERTY_SEED
// the first seed (default 1); a failure names its seed.
func TestPrepareInvariantProperty(t *testing.T) {
	realEngineEnv(t)
	cases := envInt(t, "EXT_SETUP_ROOT_PROPERTY_CASES", 200)
	first := envInt(t, "EXT_SETUP_ROOT_PROPERTY_SEED", 1)
	var removed, casesWithRemovals int
	for seed := first; seed < first+cases; seed++ {
		n := propertyCase(t, int64(seed))
		removed += n
		if n > 0 {
			casesWithRemovals++
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d cases (seeds %d-%d): %d entries deduplicated in %d cases, the merged /etc unchanged in every case",
		cases, first, first+cases-1, removed, casesWithRemovals)
	// A property that never sees a removal tests nothing.
	if casesWithRemovals < cases/10 {
		t.Fatalf("only %d of %d cases removed anything: the generator does not exercise the dedup", casesWithRemovals, cases)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: not a count", name, v)
	}
	return n
}

// propertyCase runs one seed and returns how many entries the dedup
// removed.
func propertyCase(t *testing.T, seed int64) int {
	var removed int
	t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
		r := rand.New(rand.NewSource(seed))
		c := genCase(r)
		before, after := testutil.Tmpfs(t), testutil.Tmpfs(t)
		c.write(t, before)
		c.write(t, after)
		sa, loga := runPreDedup(t, before, Cmdline{PrepareOff: true})
		sb, logb := runPreDedup(t, after, Cmdline{})
		if (sa.Err == nil) != (sb.Err == nil) {
			t.Fatalf("seed %d: stage without prepare: %v, with: %v\n%s\n%s", seed, sa.Err, sb.Err, loga, logb)
		}
		want, got := readerView(t, before), readerView(t, after)
		if d := viewDiff(want, got); d != "" {
			t.Fatalf("seed %d: the merged /etc changed by the prepare step (- before, + after):\n%s\ncase:\n%s\nlog:\n%s", seed, d, c, logb)
		}
		if sb.Prepare != nil {
			removed = sb.Prepare.Dedup
		}
	})
	return removed
}

// gnode is one generated entry: kind f (file), l (symlink), d
// (directory), w (whiteout).
type gnode struct {
	kind  byte
	data  string
	mode  uint32
	uid   int
	xattr map[string]string
}

type gtree map[string]*gnode

func (g gtree) clone() gtree {
	out := gtree{}
	for p, n := range g {
		c := *n
		c.xattr = map[string]string{}
		for k, v := range n.xattr {
			c.xattr[k] = v
		}
		out[p] = &c
	}
	return out
}

var gnames = []string{"a", "b", "c.conf", "d"}

// randNode makes a random entry (never a whiteout: see mutate).
func randNode(r *rand.Rand) *gnode {
	n := &gnode{mode: []uint32{0o644, 0o600, 0o755}[r.Intn(3)], uid: []int{0, 0, 1000}[r.Intn(3)], xattr: map[string]string{}}
	switch r.Intn(5) {
	case 0, 1:
		n.kind, n.data = 'f', []string{"x\n", "y\n", ""}[r.Intn(3)]
	case 2:
		n.kind, n.data = 'l', []string{"a", "../b", "/etc/c.conf"}[r.Intn(3)]
		n.mode = 0o777
	default:
		n.kind, n.mode = 'd', []uint32{0o755, 0o750}[r.Intn(2)]
	}
	if n.kind != 'l' && r.Intn(6) == 0 {
		n.xattr["user.k"] = []string{"1", "2"}[r.Intn(2)]
	}
	if n.kind != 'l' && r.Intn(8) == 0 {
		n.xattr["system.posix_acl_access"] = string(aclValue(uint32(1000 + r.Intn(2))))
	}
	if n.kind == 'd' && r.Intn(8) == 0 {
		n.xattr["system.posix_acl_default"] = string(aclValue(uint32(1000 + r.Intn(2))))
	}
	return n
}

// add puts a random entry at a random path whose parents are (made)
// directories.
func (g gtree) add(r *rand.Rand) {
	depth := 1 + r.Intn(3)
	p := ""
	for i := 0; i < depth; i++ {
		p = filepath.Join(p, gnames[r.Intn(len(gnames))])
		if i < depth-1 {
			if n, ok := g[p]; ok && n.kind != 'd' {
				return
			}
			if _, ok := g[p]; !ok {
				g[p] = &gnode{kind: 'd', mode: 0o755, xattr: map[string]string{}}
			}
		}
	}
	if n, ok := g[p]; ok && n.kind == 'd' {
		for q := range g {
			if strings.HasPrefix(q, p+"/") {
				return // keep its children reachable
			}
		}
	}
	g[p] = randNode(r)
}

// mutate changes a copy of g at a rate of about 1/rate: an entry removed
// (with its children), changed, made opaque or replaced by a whiteout.
func (g gtree) mutate(r *rand.Rand, rate int) gtree {
	out := g.clone()
	paths := out.sorted()
	for _, p := range paths {
		n, ok := out[p]
		if !ok || r.Intn(rate) != 0 {
			continue
		}
		switch r.Intn(6) {
		case 0:
			out.remove(p)
		case 1:
			if n.kind == 'f' {
				n.data += "changed\n"
			} else {
				n.uid = 1000 - n.uid
			}
		case 2:
			if n.kind != 'l' {
				n.mode ^= 0o040
			}
		case 3:
			if n.kind == 'd' {
				n.xattr["trusted.overlay.opaque"] = "y"
			}
		case 4:
			out.remove(p)
			out[p] = &gnode{kind: 'w', xattr: map[string]string{}}
		default:
			if n.kind != 'l' {
				n.xattr["user.k"] = "3"
			}
		}
	}
	for i := r.Intn(3); i > 0; i-- {
		out.add(r)
	}
	return out
}

func (g gtree) remove(p string) {
	for q := range g {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(g, q)
		}
	}
}

func (g gtree) sorted() []string {
	var ps []string
	for p := range g {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// write creates g below dir (parents first, directory modes last).
func (g gtree) write(t *testing.T, dir string) {
	t.Helper()
	ps := g.sorted()
	for _, p := range ps {
		n, full := g[p], filepath.Join(dir, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		switch n.kind {
		case 'f':
			must(t, os.WriteFile(full, []byte(n.data), 0o600))
		case 'l':
			must(t, os.Symlink(n.data, full))
		case 'd':
			must(t, os.MkdirAll(full, 0o755))
		case 'w':
			must(t, unix.Mknod(full, unix.S_IFCHR|0o600, 0))
		}
		must(t, os.Lchown(full, n.uid, n.uid))
	}
	for i := len(ps) - 1; i >= 0; i-- {
		n, full := g[ps[i]], filepath.Join(dir, ps[i])
		if n.kind == 'f' || n.kind == 'd' {
			must(t, os.Chmod(full, os.FileMode(n.mode)))
		}
		for _, k := range sortedKeys(n.xattr) {
			must(t, unix.Lsetxattr(full, k, []byte(n.xattr[k]), 0))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// aclValue is a POSIX access ACL xattr granting user uid read, beyond the
// three base entries (so it is not the mode alone).
func aclValue(uid uint32) []byte {
	var b bytes.Buffer
	le := func(v ...any) {
		for _, x := range v {
			binary.Write(&b, binary.LittleEndian, x)
		}
	}
	const undef = ^uint32(0)
	le(uint32(2))                      // version
	le(uint16(0x01), uint16(6), undef) // user::rw-
	le(uint16(0x02), uint16(4), uid)   // user:uid:r--
	le(uint16(0x04), uint16(4), undef) // group::r--
	le(uint16(0x10), uint16(4), undef) // mask::r--
	le(uint16(0x20), uint16(4), undef) // other::r--
	return b.Bytes()
}

// gimage is one confext directory of a case: where it is (in-root), its
// release file ("" none) and its etc/ tree.
type gimage struct {
	dir, name, release string
	etc                gtree
}

type gcase struct {
	etc    gtree
	images []gimage
}

var gconfexts = []string{"00-vendor-default", "10-a", "50-b", "90-c"}

func genCase(r *rand.Rand) *gcase {
	base := gtree{}
	for i := 6 + r.Intn(8); i > 0; i-- {
		base.add(r)
	}
	c := &gcase{etc: base.mutate(r, 3)}
	names := append([]string(nil), gconfexts...)
	r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	names = names[:1+r.Intn(4)]
	if r.Intn(5) != 0 && !contains(names, gconfexts[0]) {
		names[0] = gconfexts[0]
	}
	for _, name := range names {
		c.images = append(c.images, genImages(r, base, name)...)
	}
	return c
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// genImages makes the directories of one confext name: plain, shadowed
// (a second copy in a higher search directory) or versioned (NAME.v/
// with _1 and _2), each accepted, refused for its release or without one.
func genImages(r *rand.Rand, base gtree, name string) []gimage {
	release := func() string {
		switch r.Intn(8) {
		case 0:
			return ""
		case 1:
			return "ID=other\n"
		}
		return "ID=_any\n"
	}
	img := func(dir string) gimage {
		return gimage{dir: dir, name: name, release: release(), etc: base.mutate(r, 2+r.Intn(3))}
	}
	switch r.Intn(5) {
	case 0:
		return []gimage{img("run/confexts/" + name), img("usr/lib/confexts/" + name)}
	case 1:
		v := "usr/lib/confexts/" + name + ".v/" + name
		return []gimage{img(v + "_1"), img(v + "_2")}
	}
	return []gimage{img("usr/lib/confexts/" + name)}
}

func (c *gcase) write(t *testing.T, root string) {
	t.Helper()
	testutil.WriteTree(t, root, map[string]string{"usr/lib/os-release": "ID=flatcar\nVERSION_ID=1\n", "var/lib/.keep": ""})
	must(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	c.etc.write(t, filepath.Join(root, "etc"))
	for _, im := range c.images {
		d := filepath.Join(root, im.dir, "etc")
		must(t, os.MkdirAll(d, 0o755))
		im.etc.write(t, d)
		if im.release != "" {
			rel := filepath.Join(d, "extension-release.d", "extension-release."+im.name)
			must(t, os.MkdirAll(filepath.Dir(rel), 0o755))
			must(t, os.WriteFile(rel, []byte(im.release), 0o644))
		}
	}
}

func (c *gcase) String() string {
	var b strings.Builder
	dump := func(title string, g gtree) {
		fmt.Fprintf(&b, "  %s:\n", title)
		for _, p := range g.sorted() {
			n := g[p]
			fmt.Fprintf(&b, "    %s %c %q %o uid=%d %v\n", p, n.kind, n.data, n.mode, n.uid, n.xattr)
		}
	}
	dump("/etc", c.etc)
	for _, im := range c.images {
		dump(fmt.Sprintf("%s (release %q)", im.dir, im.release), im.etc)
	}
	return b.String()
}

// readerView is what a reader of root's /etc sees, path by path (the
// merge's own metadata directory aside).
func readerView(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	etc := filepath.Join(root, "etc")
	var walk func(dir, rel string)
	walk = func(dir, rel string) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			p := filepath.Join(rel, e.Name())
			if p == "/.systemd-confext" {
				continue
			}
			full := filepath.Join(dir, e.Name())
			out[p] = describeEntry(t, full)
			if e.IsDir() {
				walk(full, p)
			}
		}
	}
	walk(etc, "/")
	return out
}

func describeEntry(t *testing.T, p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err == unix.ENOENT {
		// overlayfs lists a whiteout of a directory that only one layer
		// provides, and finds nothing there: the reader sees that too.
		return "listed, not found"
	} else if err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	s := fmt.Sprintf("mode=%o uid=%d gid=%d", st.Mode, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		b, err := os.ReadFile(p)
		must(t, err)
		s += fmt.Sprintf(" sha=%x", sha256.Sum256(b))
	case unix.S_IFLNK:
		l, err := os.Readlink(p)
		must(t, err)
		s += " -> " + l
	case unix.S_IFCHR:
		s += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	buf := make([]byte, 1<<16)
	n, err := unix.Llistxattr(p, buf)
	if err != nil && err != unix.EOPNOTSUPP {
		t.Fatal(err)
	}
	var names []string
	for _, x := range bytes.Split(buf[:max(n, 0)], []byte{0}) {
		if len(x) > 0 {
			names = append(names, string(x))
		}
	}
	sort.Strings(names)
	for _, k := range names {
		v := make([]byte, 1<<16)
		m, err := unix.Lgetxattr(p, k, v)
		if err != nil {
			t.Fatalf("%s: %s: %v", p, k, err)
		}
		s += fmt.Sprintf(" %s=%x", k, v[:m])
	}
	return s
}

func viewDiff(want, got map[string]string) string {
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var b strings.Builder
	for _, k := range sortedKeys(func() map[string]string {
		m := map[string]string{}
		for k := range keys {
			m[k] = ""
		}
		return m
	}()) {
		w, okw := want[k]
		g, okg := got[k]
		if okw != okg || w != g {
			if okw {
				fmt.Fprintf(&b, "  - %s %s\n", k, w)
			}
			if okg {
				fmt.Fprintf(&b, "  + %s %s\n", k, g)
			}
		}
	}
	return b.String()
}

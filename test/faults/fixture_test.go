package faults

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

const version = "4000.0.0"

// images are built once per test process (mksquashfs is the slow part of a
// fixture) and copied into each root.
var (
	imagesOnce sync.Once
	imagesDir  string
	imagesErr  error
)

// buildImages makes the squashfs images of the fixture once.
func buildImages(t testing.TB) string {
	t.Helper()
	imagesOnce.Do(func() {
		imagesDir, imagesErr = os.MkdirTemp("", "ext-setup-root-faults-images-")
		if imagesErr != nil {
			return
		}
		mk := func(name string, files map[string]string) {
			src, err := os.MkdirTemp("", "src-")
			if err != nil {
				imagesErr = err
				return
			}
			defer os.RemoveAll(src)
			testutil.WriteTree(t, src, files)
			out, err := exec.Command("mksquashfs", src, filepath.Join(imagesDir, name), "-noappend", "-quiet", "-no-progress").CombinedOutput()
			if err != nil {
				imagesErr = fmt.Errorf("mksquashfs %s: %v\n%s", name, err, out)
			}
		}
		mk("00-flatcar-default.raw", map[string]string{
			"etc/extension-release.d/extension-release.00-flatcar-default": "ID=_any\n",
			"etc/flatcar-default.conf":                                     "vendor default\n",
		})
		mk("50-user.raw", map[string]string{
			"etc/extension-release.d/extension-release.50-user": "ID=flatcar\nVERSION_ID=" + version + "\n",
			"etc/user.conf": "user confext\n",
		})
		for _, n := range []string{"oem-qemu", "flatcar-zfs"} {
			mk(n+".raw", map[string]string{
				"usr/lib/extension-release.d/extension-release." + n: "ID=flatcar\nVERSION_ID=" + version + "\n",
				"usr/share/" + n + "/marker":                         n + "\n",
			})
		}
	})
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	return imagesDir
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// env is one fixture: a Flatcar-like root on its own tmpfs, with the OEM
// partition a second tmpfs inside it (so the A/B move copies across file
// systems), a kernel command line file and a state dir.
type env struct {
	t       testing.TB
	bin     string
	root    string
	cmdline string
	state   string
}

// imageNames are the images that must exist exactly once after every
// completed run (and at least once after a crash).
var imageNames = []string{"00-flatcar-default.raw", "50-user.raw", "60-new", "oem-qemu-" + version + ".raw", "flatcar-zfs-" + version + ".raw"}

func newEnv(t testing.TB, bin string) *env {
	t.Helper()
	imgs := buildImages(t)
	base := testutil.Tmpfs(t)
	root := filepath.Join(base, "root")
	os.Mkdir(root, 0o755)
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "mode=0755,size=64m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	testutil.WriteTree(t, root, map[string]string{
		"usr/lib/os-release":                    "ID=flatcar\nVERSION=" + version + "\nVERSION_ID=" + version + "\n",
		"etc/os-release":                        "->../usr/lib/os-release",
		"etc/hostname":                          "user-host\n",
		"opt/.keep":                             "",
		"var/lib/.keep":                         "",
		"usr/share/flatcar/enabled-sysext.conf": "zfs\n",
	})
	oem := filepath.Join(root, "oem")
	os.Mkdir(oem, 0o755)
	if err := unix.Mount("tmpfs", oem, "tmpfs", 0, "mode=0755,size=4m"); err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, root, map[string]string{"oem/oem-release": "ID=qemu\n", "oem/sysext/active-oem-qemu": ""})
	copyFile(t, filepath.Join(imgs, "00-flatcar-default.raw"), filepath.Join(root, "usr/lib/confexts/00-flatcar-default.raw"))
	copyFile(t, filepath.Join(imgs, "50-user.raw"), filepath.Join(root, "var/lib/confexts/50-user.raw"))
	// The new OEM image waits on the root partition: the post stage moves
	// it onto the OEM partition (a cross-file-system copy).
	copyFile(t, filepath.Join(imgs, "oem-qemu.raw"), filepath.Join(root, "etc/flatcar/oem-sysext/oem-qemu-"+version+".raw"))
	copyFile(t, filepath.Join(imgs, "flatcar-zfs.raw"), filepath.Join(root, "etc/flatcar/sysext/flatcar-zfs-"+version+".raw"))
	e := &env{t: t, bin: bin, root: root, cmdline: filepath.Join(base, "cmdline"), state: filepath.Join(base, "state")}
	os.WriteFile(e.cmdline, nil, 0o644)
	return e
}

// run runs the binary with args and extra environment; it returns the
// combined output and the error (an *exec.ExitError for a failure or a
// signal).
func (e *env) run(args []string, extra ...string) (string, error) {
	args = append([]string(nil), args...)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "ROOT", e.root)
	}
	c := exec.Command(e.bin, args...)
	c.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "EXT_SETUP_ROOT_LOG=stderr",
		"EXT_SETUP_ROOT_PROC_CMDLINE=" + e.cmdline, "EXT_SETUP_ROOT_STATE_DIR=" + e.state}, extra...)
	out, err := c.CombinedOutput()
	return string(out), err
}

// state is what a fault test compares: the mounts under the root, the
// merged views of /etc, /usr and /opt, the trees under them (the root's own
// file system, seen through a non-recursive bind, and the OEM partition),
// the state dir and the loop devices backed by files of the root.
type state struct {
	mounts []string          // "rel fstype", sorted
	merged map[string]string // "etc/x" -> content digest or "dir" or "-> target"
	under  map[string]string // same, for the file systems under the overlays
	loops  int
	lfiles []string // backing files, for messages
}

var stateNameRE = regexp.MustCompile(`-[0-9a-f]{16}|[0-9]+\.[0-9]+-[0-9]+-`)

var workdirRE = regexp.MustCompile(`(\.systemd-[a-z]+-workdir)(-[^/]*)?`)

// volatile are files whose bytes name mount ids, devices, times or random
// names: only their presence is compared.
func volatile(rel string) bool {
	b := filepath.Base(rel)
	d := filepath.Base(filepath.Dir(rel))
	return (strings.HasPrefix(d, ".systemd-") && (b == "origin" || b == "dev" || b == "work_dir" || b == "backing")) ||
		strings.HasPrefix(rel, "state-dir") // our own state records mount ids
}

func walk(t testing.TB, dir, prefix string, out map[string]string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			out[prefix+"ERR "+p] = err.Error()
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = workdirRE.ReplaceAllString(filepath.Join(prefix, rel), "$1*")
		if prefix == "state-dir" {
			rel = stateNameRE.ReplaceAllString(rel, "-*") // named by a hash of the root's path
		}
		if strings.Contains(rel, "workdir*/") {
			return fs.SkipDir // the overlay's own work files
		}
		key := rel
		for i := 2; ; i++ { // a second work dir must show up as one more entry
			if _, dup := out[key]; !dup {
				break
			}
			key = rel + "#" + strconv.Itoa(i)
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[key] = "-> " + l
		case d.IsDir():
			out[key] = "dir"
		case d.Type().IsRegular():
			if volatile(rel) {
				out[key] = "file"
				break
			}
			b, err := os.ReadFile(p)
			if err != nil {
				out[key] = "ERR " + err.Error()
				break
			}
			out[key] = fmt.Sprintf("%x", sha256.Sum256(b))
		default:
			out[key] = d.Type().String()
		}
		return nil
	})
}

func (e *env) snapshot() state {
	t := e.t
	t.Helper()
	s := state{merged: map[string]string{}, under: map[string]string{}}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 10 {
			continue
		}
		mp := fl[4]
		if mp != e.root && !strings.HasPrefix(mp, e.root+"/") {
			continue
		}
		fstype := ""
		for i, x := range fl {
			if x == "-" {
				fstype = fl[i+1]
			}
		}
		rel, _ := filepath.Rel(e.root, mp)
		s.mounts = append(s.mounts, rel+" "+fstype)
	}
	f.Close()
	sort.Strings(s.mounts)
	for _, h := range []string{"etc", "usr", "opt"} {
		walk(t, filepath.Join(e.root, h), h, s.merged)
	}
	bind := filepath.Join(filepath.Dir(e.root), "under")
	os.Mkdir(bind, 0o755)
	if err := unix.Mount(e.root, bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	walk(t, bind, "", s.under)
	unix.Unmount(bind, unix.MNT_DETACH)
	walk(t, filepath.Join(e.root, "oem"), "oem-partition", s.under)
	walk(t, e.state, "state-dir", s.under)
	s.loops = e.loops()
	s.lfiles = e.loopFiles()
	return s
}

// loopFiles lists the backing files of loop devices in this root.
func (e *env) loopFiles() []string {
	var out []string
	m, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range m {
		b, err := os.ReadFile(p)
		if f := strings.TrimSpace(string(b)); err == nil && strings.HasPrefix(f, e.root+"/") {
			out = append(out, strings.TrimPrefix(f, e.root))
		}
	}
	sort.Strings(out)
	return out
}

// loops counts the loop devices whose backing file lies in this root.
func (e *env) loops() int {
	n := 0
	m, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), e.root+"/") {
			n++
		}
	}
	return n
}

// diffMaps lists the keys whose values differ.
func diffMaps(want, got map[string]string) string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			d = append(d, "missing "+k)
		} else if g != v {
			d = append(d, "changed "+k+": "+g+" want "+v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			d = append(d, "extra "+k+" ("+got[k]+")")
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

// diff compares a completed run's state with the reference.
func diff(want, got state) string {
	var d []string
	if w, g := strings.Join(want.mounts, ", "), strings.Join(got.mounts, ", "); w != g {
		d = append(d, "mounts: "+g+"\n  want: "+w)
	}
	if x := diffMaps(want.merged, got.merged); x != "" {
		d = append(d, "merged views:\n"+x)
	}
	if x := diffMaps(want.under, got.under); x != "" {
		d = append(d, "file systems:\n"+x)
	}
	if want.loops != got.loops {
		d = append(d, fmt.Sprintf("loop devices: %d %v, want %d %v", got.loops, got.lfiles, want.loops, want.lfiles))
	}
	return strings.Join(d, "\n")
}

// imageCounts counts every image of imageNames in the file systems.
func imageCounts(s state) map[string]int {
	c := map[string]int{}
	for k, v := range s.under {
		if strings.HasPrefix(v, "->") || strings.HasPrefix(k, "oem/") {
			continue // links; the OEM mount point seen from below is empty anyway
		}
		k = strings.SplitN(k, "#", 2)[0]
		c[filepath.Base(k)]++
	}
	return c
}

// Package adversarial runs the binary on hostile roots (root tier, private
// mount namespace, tmpfs): symlinks out of the root at the paths it reads
// and writes, images that are FIFOs, sockets or device nodes, a huge
// extension-release, 10,000 entries in a search directory, names with
// newlines and control characters, an image that changes while merged. For
// each: no escape (a marker outside the root never shows up and nothing
// outside changes), no hang (a timeout), bounded memory (peak RSS of the
// process, reported), a clear error or warning, and the good image next to
// the bad ones merged (nothing lost).
package adversarial

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

// maxRSSKiB bounds every run's peak RSS; the binary needs about 6-8 MiB.
const maxRSSKiB = 64 << 10

// world is a tmpfs holding the root and, next to it, "outside": what an
// escape would reach.
type world struct {
	t       *testing.T
	bin     string
	time    string // GNU time, for the peak RSS
	base    string
	root    string
	outside string
	peak    int64
}

func newWorld(t *testing.T) *world {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs", "time")
	tm, _ := exec.LookPath("time")
	w := &world{t: t, bin: testutil.BuildTestHooksBinary(t), // EXT_SETUP_ROOT_PROC_CMDLINE is test-only
		time: tm, base: testutil.Tmpfs(t)}
	w.root = filepath.Join(w.base, "root")
	w.outside = filepath.Join(w.base, "outside")
	w.write(map[string]string{
		"root/usr/lib/os-release": "ID=flatcar\nVERSION=1.0\nVERSION_ID=1.0\n",
		"root/etc/hostname":       "host\n",
		"root/var/lib/.keep":      "",
		// A good confext that must merge whatever else is in the root.
		"root/var/lib/confexts/10-good/etc/extension-release.d/extension-release.10-good": "ID=_any\n",
		"root/var/lib/confexts/10-good/etc/good.conf":                                     "good\n",
		// What an escape would find: a confext, an os-release, a sysext.
		"outside/escaped/etc/extension-release.d/extension-release.escaped": "ID=_any\n",
		"outside/escaped/etc/ESCAPED.conf":                                  "escape\n",
		"outside/os-release":                                                "ID=flatcar\nVERSION=6.6.6\nVERSION_ID=6.6.6\n",
		"outside/victim/keep":                                               "keep\n",
	})
	// The same absolute paths as seen from the host: an absolute symlink
	// followed on the host instead of in the root lands here.
	return w
}

func (w *world) write(files map[string]string) {
	w.t.Helper()
	testutil.WriteTree(w.t, w.base, files)
}

// run runs the binary with a timeout (a hang is a failure) and records
// its peak RSS.
func (w *world) run(args ...string) (string, error) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "ROOT", w.root)
	}
	// Through GNU time: the rusage of a child that Go starts shares the
	// test process's memory until exec, and the kernel carries that high
	// water mark over into the child's ru_maxrss; time(1) forks the binary
	// from its own small process and reports only the binary's.
	rssFile := filepath.Join(w.base, "rss")
	c := exec.CommandContext(ctx, w.time, append([]string{"-f", "%M", "-o", rssFile, w.bin}, args...)...)
	c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "EXT_SETUP_ROOT_LOG=stderr",
		"EXT_SETUP_ROOT_PROC_CMDLINE=/dev/null", "EXT_SETUP_ROOT_STATE_DIR=" + filepath.Join(w.base, "state")}
	out, err := c.CombinedOutput()
	if ctx.Err() != nil {
		w.t.Fatalf("%v: hung (killed after 60 s)\n%s", args, out)
	}
	b, rerr := os.ReadFile(rssFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	kib, perr := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if rerr != nil || perr != nil {
		w.t.Fatalf("%v: no peak RSS from time(1): %v %v %q", args, rerr, perr, b)
	}
	w.peak = max(w.peak, kib)
	if kib > maxRSSKiB {
		w.t.Errorf("%v: peak RSS %d KiB > %d KiB", args, kib, maxRSSKiB)
	}
	return string(out), err
}

// tree digests everything below dir (names, types, link targets, bytes).
func tree(dir string) string {
	var lines []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			lines = append(lines, "ERR "+p)
			return nil
		}
		l := strings.TrimPrefix(p, dir) + " " + d.Type().String()
		if d.Type()&fs.ModeSymlink != 0 {
			t, _ := os.Readlink(p)
			l += " -> " + t
		} else if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			l += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, l)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// mergeAndCheck runs confext merge (and refresh, unmerge) and checks: no
// escape, nothing outside changed, the good confext merged, the log names
// each want string.
func (w *world) mergeAndCheck(want ...string) string {
	w.t.Helper()
	before := tree(w.outside)
	out, err := w.run("confext", "--root=ROOT", "--mutable=auto", "merge")
	if err != nil {
		w.t.Fatalf("merge failed (a bad image must only be skipped): %v\n%s", err, out)
	}
	etc := filepath.Join(w.root, "etc")
	if b, err := os.ReadFile(filepath.Join(etc, "good.conf")); err != nil || string(b) != "good\n" {
		w.t.Errorf("the good confext is not merged (%v)\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(etc, "ESCAPED.conf")); err == nil {
		w.t.Errorf("a confext from outside the root was merged\n%s", out)
	}
	for _, s := range want {
		if !strings.Contains(out, s) {
			w.t.Errorf("log lacks %q:\n%s", s, out)
		}
	}
	if o2, err := w.run("confext", "--root=ROOT", "--mutable=auto", "refresh"); err != nil {
		w.t.Errorf("refresh: %v\n%s", err, o2)
	}
	if o2, err := w.run("confext", "--root=ROOT", "status"); err != nil {
		w.t.Errorf("status: %v\n%s", err, o2)
	}
	if o2, err := w.run("confext", "--root=ROOT", "unmerge"); err != nil {
		w.t.Errorf("unmerge: %v\n%s", err, o2)
	}
	if after := tree(w.outside); after != before {
		w.t.Errorf("something outside the root changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	return out
}

var peaks = map[string]int64{}

func report(t *testing.T, w *world) {
	peaks[t.Name()] = w.peak
	t.Logf("peak RSS %d KiB", w.peak)
}

// TestSymlinksOutOfRoot: absolute, ".." and looping symlinks at the paths
// the merge reads (search dirs, images, release files, os-release, the
// mutable dir) and the A/B selection reads and writes (OEM release, stores,
// link dir, enabled lists, migration list).
func TestSymlinksOutOfRoot(t *testing.T) {
	w := newWorld(t)
	rel := "../../../outside" // from root/var/lib/confexts/x: up to base
	w.write(map[string]string{
		// search directories and images
		"root/run/confexts":                 "->" + w.outside + "/escaped",
		"root/usr/local/lib/confexts":       "->../../../../outside",
		"root/var/lib/confexts/20-abs":      "->" + w.outside + "/escaped",
		"root/var/lib/confexts/21-dotdot":   "->" + rel + "/escaped",
		"root/var/lib/confexts/22-loop-a":   "->22-loop-b",
		"root/var/lib/confexts/22-loop-b":   "->22-loop-a",
		"root/var/lib/confexts/23-self.raw": "->23-self.raw",
		"root/var/lib/confexts/24-deep.raw": "->" + strings.Repeat("../", 64) + "outside/os-release",
		"root/var/lib/confexts/25-rel/etc/extension-release.d/extension-release.25-rel": "->" + rel + "/os-release",
		// the mutable dir points out of the root
		"root/var/lib/extensions.mutable/etc": "->" + w.outside + "/victim",
		// A/B inputs
		"root/oem":                                   "->" + w.outside,
		"root/etc/extensions":                        "->../../outside/victim",
		"root/etc/flatcar/enabled-sysext.conf":       "->" + w.outside + "/os-release",
		"root/usr/share/flatcar/enabled-sysext.conf": "victim\n",
		"root/etc/flatcar/sysext":                    "->" + strings.Repeat("../", 10) + "outside/victim",
	})
	// The host side of the absolute links: inside the root these names
	// do not exist, on the host they lead to the marker confext.
	w.mergeAndCheck()
	before := tree(w.outside)
	for _, args := range [][]string{
		{"links", "--root=ROOT"}, {"plan", "--root=ROOT"},
		{"boot", "--stage=pre", "--root=ROOT"}, {"boot", "--stage=post", "--root=ROOT"},
		{"sysext", "--root=ROOT", "merge"}, {"sysext", "--root=ROOT", "unmerge"},
		{"confext", "--root=ROOT", "unmerge"},
	} {
		out, _ := w.run(args...)
		if strings.Contains(out, "6.6.6") {
			t.Errorf("%v read the os-release outside the root:\n%s", args, out)
		}
	}
	if after := tree(w.outside); after != before {
		t.Errorf("the A/B selection or the boot stages changed something outside the root:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	report(t, w)
}

// TestSpecialFileImages: a FIFO (opening it for reading would block
// forever), a socket, a character and a block device node as images and as
// extension-release files.
func TestSpecialFileImages(t *testing.T) {
	w := newWorld(t)
	d := filepath.Join(w.root, "var/lib/confexts")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(unix.Mkfifo(filepath.Join(d, "30-fifo.raw"), 0o644))
	l, err := net.Listen("unix", filepath.Join(d, "31-socket.raw"))
	must(err)
	defer l.Close()
	must(unix.Mknod(filepath.Join(d, "32-chardev.raw"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))))  // /dev/zero
	must(unix.Mknod(filepath.Join(d, "33-blockdev.raw"), unix.S_IFBLK|0o644, int(unix.Mkdev(7, 0)))) // loop0
	// A directory image whose extension-release is a FIFO.
	rd := filepath.Join(d, "34-fifo-release/etc/extension-release.d")
	must(os.MkdirAll(rd, 0o755))
	must(unix.Mkfifo(filepath.Join(rd, "extension-release.34-fifo-release"), 0o644))
	w.mergeAndCheck("skipped "+d+"/30-fifo.raw: neither", "skipped "+d+"/31-socket.raw: neither",
		"skipped "+d+"/32-chardev.raw: neither", "33-blockdev", "34-fifo-release")
	report(t, w)
}

// TestHugeReleaseAndManyEntries: a 1 MiB and a 5 MiB extension-release,
// and 10,000 other entries in the search directory.
func TestHugeReleaseAndManyEntries(t *testing.T) {
	w := newWorld(t)
	d := filepath.Join(w.root, "var/lib/confexts")
	big := "ID=_any\n" + strings.Repeat("X_PADDING=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", (1<<20)/74)
	huge := strings.Repeat("Y=", 5<<20/2)
	w.write(map[string]string{
		"root/var/lib/confexts/40-big/etc/extension-release.d/extension-release.40-big":   big,
		"root/var/lib/confexts/40-big/etc/big.conf":                                       "big\n",
		"root/var/lib/confexts/41-huge/etc/extension-release.d/extension-release.41-huge": huge,
	})
	for i := 0; i < 10000; i++ {
		var err error
		switch i % 3 {
		case 0:
			err = os.WriteFile(filepath.Join(d, fmt.Sprintf("junk-%05d.txt", i)), nil, 0o644)
		case 1:
			err = os.WriteFile(filepath.Join(d, fmt.Sprintf("junk-%05d.raw", i)), []byte("not an image"), 0o644)
		default:
			err = os.Mkdir(filepath.Join(d, fmt.Sprintf("empty-%05d", i)), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	out := w.mergeAndCheck("41-huge")
	t.Logf("merge, refresh, status, unmerge with 10,002 entries: %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(out, "40-big") {
		t.Errorf("the confext with a 1 MiB extension-release was not considered:\n%.2000s", out)
	}
	report(t, w)
}

// TestControlCharacterNames: image names with a newline, a tab, escape
// and other control characters, and a non-UTF-8 name.
func TestControlCharacterNames(t *testing.T) {
	w := newWorld(t)
	for _, n := range []string{"50-new\nline", "51-tab\there", "52-esc\x1b[31m", "53-bell\x07", "54-bad\xff"} {
		w.write(map[string]string{
			"root/var/lib/confexts/" + n + "/etc/extension-release.d/extension-release." + n: "ID=_any\n",
			"root/var/lib/confexts/" + n + "/etc/ctl.conf":                                   "ctl\n",
		})
	}
	d := filepath.Join(w.root, "var/lib/confexts")
	out := w.mergeAndCheck("skipped \""+d+"/50-new\\nline\": invalid image name", "skipped \""+d+"/54-bad\\xff\": invalid image name")
	if strings.Contains(out, "\nline") {
		t.Errorf("a newline of a file name reached the log unquoted:\n%s", out)
	}
	// The metadata lists one name per line: a name with a newline in it
	// would forge two entries.
	if b, err := os.ReadFile(filepath.Join(w.root, "etc/.systemd-confext/confexts")); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l == "line" || l == "50-new" {
				t.Errorf("a newline in an image name split the confexts list: %q", b)
			}
		}
	}
	report(t, w)
}

// TestImageChangesWhileMerged: a squashfs image is rewritten and a
// directory image edited while merged; refresh picks both up and nothing
// written to /etc is lost.
func TestImageChangesWhileMerged(t *testing.T) {
	w := newWorld(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc/extension-release.d"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/extension-release.d/extension-release.60-sq"), []byte("ID=_any\n"), 0o644)
	os.WriteFile(filepath.Join(src, "etc/sq.conf"), []byte("v1\n"), 0o644)
	img := filepath.Join(w.root, "var/lib/confexts/60-sq.raw")
	testutil.MakeSquashfs(t, src, img)
	os.MkdirAll(filepath.Join(w.root, "var/lib/extensions.mutable"), 0o755)
	os.Symlink("/etc", filepath.Join(w.root, "var/lib/extensions.mutable/etc"))
	if out, err := w.run("confext", "--root=ROOT", "--mutable=auto", "merge"); err != nil {
		t.Fatalf("merge: %v\n%s", err, out)
	}
	etc := filepath.Join(w.root, "etc")
	os.WriteFile(filepath.Join(etc, "user-written"), []byte("keep me\n"), 0o644)
	// Rewrite the image in place (same inode: the loop device's backing
	// file changes under the merge) and edit the directory image.
	os.WriteFile(filepath.Join(src, "etc/sq.conf"), []byte("v2\n"), 0o644)
	img2 := filepath.Join(t.TempDir(), "new.raw")
	testutil.MakeSquashfs(t, src, img2)
	b, _ := os.ReadFile(img2)
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(w.root, "var/lib/confexts/10-good/etc/good.conf"), []byte("good v2\n"), 0o644)
	// Reading the merged view of the rewritten image must not crash or
	// hang anything; its content is whatever squashfs makes of it.
	os.ReadFile(filepath.Join(etc, "sq.conf"))
	out, err := w.run("confext", "--root=ROOT", "--mutable=auto", "refresh")
	if err != nil {
		t.Fatalf("refresh after the change: %v\n%s", err, out)
	}
	for f, want := range map[string]string{"sq.conf": "v2\n", "good.conf": "good v2\n", "user-written": "keep me\n"} {
		if b, err := os.ReadFile(filepath.Join(etc, f)); err != nil || string(b) != want {
			t.Errorf("/etc/%s: %q, %v; want %q\n%s", f, b, err, want, out)
		}
	}
	if out, err := w.run("confext", "--root=ROOT", "unmerge"); err != nil {
		t.Fatalf("unmerge: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(etc, "user-written")); err != nil || string(b) != "keep me\n" {
		t.Errorf("a file written to /etc was lost: %q, %v", b, err)
	}
	report(t, w)
}

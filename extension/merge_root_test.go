package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// testRoot builds a root on a fresh tmpfs with an os-release and returns it.
func testRoot(t *testing.T, layout string) string {
	t.Helper()
	testutil.RequireRoot(t)
	r := filepath.Join(testutil.Tmpfs(t), "root")
	must(t, os.MkdirAll(filepath.Join(r, "etc"), 0o755))
	write(t, filepath.Join(r, "etc/os-release"), "ID=testos\nVERSION_ID=1.0\n")
	write(t, filepath.Join(r, "etc/hostfile"), "host\n")
	must(t, os.MkdirAll(filepath.Join(r, "var/lib/extensions.mutable"), 0o755))
	switch layout {
	case "symlink":
		must(t, os.Symlink("/etc", filepath.Join(r, "var/lib/extensions.mutable/etc")))
	case "separate":
		must(t, os.Mkdir(filepath.Join(r, "var/lib/extensions.mutable/etc"), 0o755))
	}
	state := t.TempDir()
	old := paths.StateDir
	paths.StateDir = state
	t.Cleanup(func() { paths.StateDir = old })
	return r
}

// workSuffix is the per-run part of our work dir names (workName).
var workSuffix = regexp.MustCompile(`(\.systemd-[^/]*-workdir)-[0-9a-f]{16}`)

// plainWorkDir replaces our per-run work dir names in s with systemd's
// plain one, for comparisons with systemd's metadata.
func plainWorkDir(s string) string { return workSuffix.ReplaceAllString(s, "$1") }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(s), 0o644))
}

// dirImage creates a directory confext NAME with one file NAME.conf.
func dirImage(t *testing.T, root, name, release string) string {
	d := filepath.Join(root, "var/lib/confexts", name)
	write(t, filepath.Join(d, "etc/extension-release.d/extension-release."+name), release)
	write(t, filepath.Join(d, "etc", name+".conf"), name+"\n")
	return d
}

// rawImage builds a squashfs or erofs confext NAME.raw.
func rawImage(t *testing.T, root, fstype, name string) string {
	src := filepath.Join(t.TempDir(), name)
	write(t, filepath.Join(src, "etc/extension-release.d/extension-release."+name), "ID=_any\n")
	write(t, filepath.Join(src, "etc", name+".conf"), name+"\n")
	out := filepath.Join(root, "usr/lib/confexts", name+".raw")
	must(t, os.MkdirAll(filepath.Dir(out), 0o755))
	if fstype == "erofs" {
		testutil.MakeErofs(t, src, out)
	} else {
		testutil.MakeSquashfs(t, src, out)
	}
	return out
}

func opts(root, mode string) Options {
	return Options{Root: root, Class: config.Confext, Mutable: mode, Log: oplog.Discard(), Getenv: func(string) string { return "" }}
}

func readMeta(t *testing.T, root, f string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(root, "etc/.systemd-confext", f))
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	must(t, err)
	return string(b), true
}

func checkDev(t *testing.T, root string) {
	t.Helper()
	dev, ok := readMeta(t, root, "dev")
	if !ok {
		t.Fatal("no dev file")
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(root, "etc"), &st))
	if want := fmt.Sprintf("%d:%d\n", unix.Major(st.Dev), unix.Minor(st.Dev)); dev != want {
		t.Fatalf("dev = %q, want %q", dev, want)
	}
}

func TestMutableModes(t *testing.T) {
	type want struct {
		fail       bool
		workDir    string // "" = no work_dir file
		mutableDir string // "" = absent
		writable   bool
	}
	cases := []struct {
		layout, mode string
		want         want
	}{
		{"symlink", "no", want{}},
		{"symlink", "auto", want{workDir: ".systemd-etc-workdir\n", mutableDir: "/etc", writable: true}},
		{"symlink", "yes", want{workDir: ".systemd-etc-workdir\n", mutableDir: "/etc", writable: true}},
		{"symlink", "import", want{fail: true}},
		{"symlink", "ephemeral", want{mutableDir: "/run/systemd/sysext/etc", writable: true}},
		{"symlink", "ephemeral-import", want{fail: true}},
		{"separate", "yes", want{workDir: "var/lib/extensions.mutable/.systemd-etc-workdir\n", mutableDir: "/var/lib/extensions.mutable/etc", writable: true}},
		{"separate", "import", want{mutableDir: "/var/lib/extensions.mutable/etc"}},
		{"separate", "ephemeral-import", want{mutableDir: "/run/systemd/sysext/etc", writable: true}},
		{"none", "auto", want{}},
		{"none", "yes", want{workDir: "var/lib/extensions.mutable/.systemd-etc-workdir\n", mutableDir: "/var/lib/extensions.mutable/etc", writable: true}},
	}
	for _, c := range cases {
		t.Run(c.layout+"/"+c.mode, func(t *testing.T) {
			r := testRoot(t, c.layout)
			dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
			res, err := Merge(context.Background(), opts(r, c.mode))
			if c.want.fail {
				if err == nil {
					t.Fatalf("merge succeeded, want failure (systemd fails too)")
				}
				if _, statErr := os.Stat(filepath.Join(r, "etc/.systemd-confext")); statErr == nil {
					t.Fatal("failed merge left a merge")
				}
				return
			}
			must(t, err)
			if strings.Join(res.Merged, ",") != "dir1" {
				t.Fatalf("merged %v", res.Merged)
			}
			checkDev(t, r)
			if s, _ := readMeta(t, r, "confexts"); s != "dir1\n" {
				t.Fatalf("confexts %q", s)
			}
			wd, ok := readMeta(t, r, "work_dir")
			if wd = plainWorkDir(wd); wd != c.want.workDir || ok != (c.want.workDir != "") {
				t.Fatalf("work_dir %q (exists %v), want %q", wd, ok, c.want.workDir)
			}
			if _, ok := readMeta(t, r, "backing"); ok {
				t.Fatal("backing written on tmpfs (systemd never does)")
			}
			origin, _ := readMeta(t, r, "origin")
			if c.want.mutableDir != "" && !strings.Contains(origin, `"/etc" : "`+c.want.mutableDir+`"`) {
				t.Fatalf("origin lacks mutableDirs %s:\n%s", c.want.mutableDir, origin)
			}
			if c.want.mutableDir == "" && strings.Contains(origin, "mutableDirs") {
				t.Fatalf("origin has mutableDirs:\n%s", origin)
			}
			for _, f := range []string{"dir1.conf", "hostfile"} {
				if _, err := os.Stat(filepath.Join(r, "etc", f)); err != nil && !(c.layout == "symlink" && c.mode == "yes" && false) {
					t.Fatalf("merged /etc lacks %s: %v", f, err)
				}
			}
			err = os.WriteFile(filepath.Join(r, "etc/newfile"), []byte("x"), 0o644)
			if (err == nil) != c.want.writable {
				t.Fatalf("write to merged /etc: %v, want writable=%v", err, c.want.writable)
			}
			if err := os.WriteFile(filepath.Join(r, "etc/.systemd-confext/x"), nil, 0o644); err == nil {
				t.Fatal(".systemd-confext is writable")
			}
			if _, err := Merge(context.Background(), opts(r, c.mode)); err == nil {
				t.Fatal("second merge succeeded; systemd says already merged")
			}
			res, err = Unmerge(context.Background(), opts(r, c.mode))
			must(t, err)
			if !res.Unmerged {
				t.Fatal("unmerge did nothing")
			}
			if _, err := os.Stat(filepath.Join(r, "etc/dir1.conf")); err == nil {
				t.Fatal("still merged after unmerge")
			}
			if c.want.workDir != "" {
				if _, err := os.Stat(filepath.Join(r, strings.TrimSpace(c.want.workDir))); err == nil {
					t.Fatal("work dir left after unmerge")
				}
			}
		})
	}
}

func TestImageTypesAndNames(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	dirImage(t, r, "co,mma", "ID=_any\n")
	dirImage(t, r, "col:on", "ID=_any\n")
	dirImage(t, r, "sp ace", "ID=_any\n")
	rawImage(t, r, "squashfs", "sq1")
	rawImage(t, r, "erofs", "er1")
	gptImage(t, r, "gp1")
	res, err := Merge(context.Background(), opts(r, "yes"))
	must(t, err)
	want := []string{"co,mma", "col:on", "dir1", "er1", "gp1", "sp ace", "sq1"}
	if strings.Join(res.Merged, "|") != strings.Join(want, "|") {
		t.Fatalf("merged %q, skipped %v", res.Merged, res.Skipped)
	}
	for _, n := range want {
		b, err := os.ReadFile(filepath.Join(r, "etc", n+".conf"))
		if err != nil || string(b) != n+"\n" {
			t.Fatalf("%s.conf: %q %v", n, b, err)
		}
	}
	if s, _ := readMeta(t, r, "confexts"); s != strings.Join(want, "\n")+"\n" {
		t.Fatalf("confexts %q", s)
	}
	checkDev(t, r)
	_, err = Unmerge(context.Background(), opts(r, "yes"))
	must(t, err)
}

// gptImage writes a GPT disk image with one root-x86-64 partition holding
// a squashfs confext.
func gptImage(t *testing.T, root, name string) {
	src := filepath.Join(t.TempDir(), name)
	write(t, filepath.Join(src, "etc/extension-release.d/extension-release."+name), "ID=_any\n")
	write(t, filepath.Join(src, "etc", name+".conf"), name+"\n")
	gptDisk(t, src, filepath.Join(root, "usr/lib/confexts", name+".raw"), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
}

// gptDisk writes out as a GPT disk with one partition of type typ holding
// a squashfs of src.
func gptDisk(t *testing.T, src, out, typ string) {
	testutil.RequireTool(t, "sgdisk")
	sq := filepath.Join(t.TempDir(), "fs.sq")
	testutil.MakeSquashfs(t, src, sq)
	data, err := os.ReadFile(sq)
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(out), 0o755))
	size := int64(2048*512) + int64(len(data)) + 1<<20
	size = (size + 511) / 512 * 512
	f, err := os.Create(out)
	must(t, err)
	must(t, f.Truncate(size))
	f.Close()
	if b, err := exec.Command("sgdisk", "-n", "1:2048:0", "-t", "1:"+typ, out).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v %s", err, b)
	}
	f, err = os.OpenFile(out, os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt(data, 2048*512)
	must(t, err)
	f.Close()
}

func TestManyLayers(t *testing.T) {
	r := testRoot(t, "symlink")
	for i := 0; i < 128; i++ {
		dirImage(t, r, fmt.Sprintf("img%03d", i), "ID=_any\n")
	}
	res, err := Merge(context.Background(), opts(r, "yes"))
	must(t, err)
	if len(res.Merged) != 128 {
		t.Fatalf("merged %d", len(res.Merged))
	}
	if _, err := os.Stat(filepath.Join(r, "etc/img127.conf")); err != nil {
		t.Fatal(err)
	}
}

func TestBadImagesSkippedAndEssential(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "good", "ID=testos\nVERSION_ID=1.0\n")
	dirImage(t, r, "wrongver", "ID=testos\nVERSION_ID=2.0\n")
	write(t, filepath.Join(r, "usr/lib/confexts/corrupt.raw"), strings.Repeat("garbage!", 1000))
	res, err := Merge(context.Background(), opts(r, "yes"))
	must(t, err)
	if strings.Join(res.Merged, ",") != "good" || len(res.Skipped) != 2 {
		t.Fatalf("merged %v skipped %v", res.Merged, res.Skipped)
	}
	for _, s := range res.Skipped {
		if s.Name == "wrongver" && !strings.Contains(s.Reason, "VERSION_ID") {
			t.Fatalf("reason for wrongver does not name the field: %q", s.Reason)
		}
		if s.Name == "corrupt" && !strings.Contains(s.Reason, "corrupt.raw") {
			t.Fatalf("reason for corrupt does not name the file: %q", s.Reason)
		}
	}
	o := opts(r, "yes")
	o.Essential = []string{"corr*"}
	if _, err := Refresh(context.Background(), o); err == nil {
		t.Fatal("essential corrupt image did not fail the refresh")
	}
	if _, err := os.Stat(filepath.Join(r, "etc/good.conf")); err != nil {
		t.Fatal("failed refresh removed the merge in place")
	}
}

func TestRefreshSkipAndChanges(t *testing.T) {
	r := testRoot(t, "symlink")
	d := dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	rawImage(t, r, "squashfs", "sq1")
	ctx := context.Background()
	_, err := Merge(ctx, opts(r, "yes"))
	must(t, err)
	res, err := Refresh(ctx, opts(r, "yes"))
	must(t, err)
	if !res.Unchanged {
		t.Fatal("unchanged refresh did not skip")
	}
	// In-place edit of a directory image: systemd misses it (41523), we don't.
	write(t, filepath.Join(d, "etc/dir1.conf"), "edited\n")
	var logb bytes.Buffer
	o := opts(r, "yes")
	o.Log = oplog.New(oplog.WriterSink{W: &logb})
	res, err = Refresh(ctx, o)
	must(t, err)
	if res.Unchanged || !res.Replaced {
		t.Fatalf("in-place edit not noticed: %+v", res)
	}
	if n := strings.Count(logb.String(), "dir1 changed in place"); n != 1 {
		t.Errorf("in-place edit reported %d times, want once:\n%s", n, logb.String())
	}
	res, err = Refresh(ctx, opts(r, "yes"))
	must(t, err)
	if !res.Unchanged {
		t.Fatal("second refresh after edit did not skip")
	}
	// A different mode changes origin.
	res, err = Refresh(ctx, opts(r, "no"))
	must(t, err)
	if res.Unchanged {
		t.Fatal("mode change not noticed")
	}
	// Failed assembly keeps the old merge.
	o = opts(r, "no")
	o.Getenv = func(k string) string {
		if k == config.Confext.OverlayOptionsEnv {
			return "no_such_overlay_option=1"
		}
		return ""
	}
	if _, err := Refresh(ctx, o); err == nil {
		t.Fatal("refresh with a bad overlay option succeeded")
	}
	// The same in mode yes: the new work dir the failed build made is gone.
	works := func() []string {
		m, err := filepath.Glob(filepath.Join(r, ".systemd-etc-workdir*"))
		must(t, err)
		return m
	}
	before := works()
	o.Mutable = "yes"
	if _, err := Refresh(ctx, o); err == nil {
		t.Fatal("refresh with a bad overlay option succeeded (mode yes)")
	}
	if after := works(); len(after) != len(before) {
		t.Fatalf("failed build left a work dir: %q, before %q", after, before)
	}
	if b, err := os.ReadFile(filepath.Join(r, "etc/dir1.conf")); err != nil || string(b) != "edited\n" {
		t.Fatalf("old merge not intact after failed assembly: %q %v", b, err)
	}
	checkDev(t, r)
	// No images left, mode no: refresh unmerges.
	must(t, os.RemoveAll(d))
	must(t, os.Remove(filepath.Join(r, "usr/lib/confexts/sq1.raw")))
	res, err = Refresh(ctx, opts(r, "no"))
	must(t, err)
	if !res.Unmerged {
		t.Fatalf("refresh with no images did not unmerge: %+v", res)
	}
}

// TestReplacementWindow stats a host file and an extension file in a tight
// loop while the merge is replaced; with MOVE_MOUNT_BENEATH no stat may
// fail. The forced fallback must report the gap.
func TestReplacementWindow(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	rawImage(t, r, "squashfs", "sq1")
	ctx := context.Background()
	_, err := Merge(ctx, opts(r, "yes"))
	must(t, err)
	n := 1000
	if testing.Short() {
		n = 100
	}
	var stop atomic.Bool
	var fails, probes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var st unix.Stat_t
		for !stop.Load() {
			for _, f := range []string{"etc/hostfile", "etc/sq1.conf"} {
				if unix.Stat(filepath.Join(r, f), &st) != nil {
					fails.Add(1)
				}
				probes.Add(1)
			}
		}
	}()
	o := opts(r, "yes")
	o.AlwaysRefresh = true
	for i := 0; i < n; i++ {
		res, err := Refresh(ctx, o)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("replacement %d: %v", i, err)
		}
		if res.Gap || !res.Replaced {
			t.Fatalf("replacement %d: %+v", i, res)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d replacements, %d probes, %d failures", n, probes.Load(), fails.Load())
	if fails.Load() != 0 {
		t.Fatalf("%d of %d stats failed during replacement", fails.Load(), probes.Load())
	}
	entries, _ := os.ReadDir(r)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".systemd-etc-workdir") && e.Name() != ".systemd-etc-workdir" {
			wd, _ := readMeta(t, r, "work_dir")
			if strings.TrimSpace(wd) != e.Name() {
				t.Fatalf("stale work dir %s (current %q)", e.Name(), wd)
			}
		}
	}
	o.NoBeneath = true
	res, err := Refresh(ctx, o)
	must(t, err)
	if !res.Gap {
		t.Fatal("forced fallback did not report a gap")
	}
	checkDev(t, r)
}

// TestRefreshFingerprintUnknown: a directory image that could not be
// fingerprinted is recorded as "unknown", and a refresh facing that record
// replaces the merge instead of skipping (issue 8 item 8: the error used to
// be dropped, recording no fingerprint, which silently turned off in-place
// edit detection for that image).
func TestRefreshFingerprintUnknown(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	ctx := context.Background()
	_, err := Merge(ctx, opts(r, "yes"))
	must(t, err)
	files, _ := filepath.Glob(filepath.Join(paths.StateDir, "confext-*.json"))
	if len(files) != 1 {
		t.Fatalf("state files %v", files)
	}
	b, err := os.ReadFile(files[0])
	must(t, err)
	var st record.State
	must(t, json.Unmarshal(b, &st))
	rec := st.Images["dir1"]
	if rec.Fingerprint == "" || rec.Fingerprint == fingerprintUnknown {
		t.Fatalf("merge recorded fingerprint %q", rec.Fingerprint)
	}
	rec.Fingerprint = fingerprintUnknown
	st.Images["dir1"] = rec
	b, _ = json.Marshal(st)
	must(t, os.WriteFile(files[0], b, 0o600))
	var logb bytes.Buffer
	o := opts(r, "yes")
	o.Log = oplog.New(oplog.WriterSink{W: &logb})
	res, err := Refresh(ctx, o)
	must(t, err)
	if res.Unchanged || !res.Replaced || !strings.Contains(logb.String(), "could not be fingerprinted") {
		t.Fatalf("refresh skipped over an unknown fingerprint: %+v\n%s", res, logb.String())
	}
	res, err = Refresh(ctx, opts(r, "yes"))
	must(t, err)
	if !res.Unchanged {
		t.Fatal("the refresh after did not skip: the fingerprint was not recorded again")
	}
}

// TestFingerprintFailure: a failed fingerprint is a warning and the
// conservative "unknown", never "" (which means "nothing to compare").
func TestFingerprintFailure(t *testing.T) {
	var logb bytes.Buffer
	e := &engine{log: oplog.New(oplog.WriterSink{W: &logb}), rootPath: "/"}
	f, err := os.Open("/proc/self/status") // not a directory: reopen fails
	must(t, err)
	defer f.Close()
	if fp := e.fingerprint(discover.Image{Name: "x", Type: discover.ImageDirectory, Path: "/x"}, f); fp != fingerprintUnknown {
		t.Fatalf("fingerprint = %q", fp)
	}
	if !strings.Contains(logb.String(), "warning: cannot fingerprint directory image /x") {
		t.Fatalf("no warning: %q", logb.String())
	}
}

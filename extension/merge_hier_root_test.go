package extension

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// sysextImage creates a directory sysext with files under usr/ and,
// optionally, opt/.
func sysextImage(t *testing.T, root, name string, withOpt bool) {
	d := filepath.Join(root, "var/lib/extensions", name)
	write(t, filepath.Join(d, "usr/lib/extension-release.d/extension-release."+name), "ID=_any\n")
	write(t, filepath.Join(d, "usr/share", name), name+"\n")
	if withOpt {
		write(t, filepath.Join(d, "opt", name), name+"\n")
	}
}

func sysextOpts(root, mode string) Options {
	o := opts(root, mode)
	o.Class = config.Sysext
	return o
}

// TestSysextHierarchies covers a missing hierarchy (/opt: created, as
// systemd does, when an image provides it), an empty one (not a lower),
// a hierarchy no image provides (not mounted in mode no) and a read-only
// hierarchy (mode no works; an upper on a read-only fs is refused).
func TestSysextHierarchies(t *testing.T) {
	ctx := context.Background()
	t.Run("missing-opt-created", func(t *testing.T) {
		r := testRoot(t, "none")
		must(t, os.MkdirAll(filepath.Join(r, "usr/bin"), 0o755))
		write(t, filepath.Join(r, "usr/bin/hosttool"), "x")
		sysextImage(t, r, "tools", true)
		res, err := Merge(ctx, sysextOpts(r, "no"))
		must(t, err)
		if len(res.Hierarchies) != 2 {
			t.Fatalf("hierarchies %v", res.Hierarchies)
		}
		for _, f := range []string{"usr/share/tools", "usr/bin/hosttool", "opt/tools", "usr/.systemd-sysext/extensions", "opt/.systemd-sysext/extensions"} {
			if _, err := os.Stat(filepath.Join(r, f)); err != nil {
				t.Fatal(err)
			}
		}
		_, err = Unmerge(ctx, sysextOpts(r, "no"))
		must(t, err)
		if _, err := os.Stat(filepath.Join(r, "opt/tools")); err == nil {
			t.Fatal("opt still merged")
		}
	})
	t.Run("no-image-for-opt", func(t *testing.T) {
		r := testRoot(t, "none")
		must(t, os.MkdirAll(filepath.Join(r, "usr"), 0o755))
		must(t, os.MkdirAll(filepath.Join(r, "opt"), 0o755)) // empty host hierarchy
		sysextImage(t, r, "tools", false)
		res, err := Merge(ctx, sysextOpts(r, "no"))
		must(t, err)
		if len(res.Hierarchies) != 1 || !strings.HasSuffix(res.Hierarchies[0], "/usr") {
			t.Fatalf("hierarchies %v", res.Hierarchies)
		}
		if _, err := os.Stat(filepath.Join(r, "opt/.systemd-sysext")); err == nil {
			t.Fatal("/opt merged without any image for it")
		}
	})
	t.Run("empty-host-yes", func(t *testing.T) {
		r := testRoot(t, "none")
		must(t, os.MkdirAll(filepath.Join(r, "usr"), 0o755)) // empty: not a lower
		sysextImage(t, r, "tools", false)
		_, err := Merge(ctx, sysextOpts(r, "yes"))
		must(t, err)
		if _, err := os.Stat(filepath.Join(r, "usr/share/tools")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gpt-usr-partition", func(t *testing.T) {
		r := testRoot(t, "none")
		must(t, os.MkdirAll(filepath.Join(r, "usr/bin"), 0o755))
		write(t, filepath.Join(r, "usr/bin/hosttool"), "x")
		src := filepath.Join(t.TempDir(), "usrtree")
		write(t, filepath.Join(src, "lib/extension-release.d/extension-release.gpu"), "ID=_any\n")
		write(t, filepath.Join(src, "share/gpu"), "gpu\n")
		must(t, os.MkdirAll(filepath.Join(r, "var/lib/extensions"), 0o755))
		gptDisk(t, src, filepath.Join(r, "var/lib/extensions/gpu.raw"), "8484680c-9521-48c6-9c11-b0720656f69e")
		res, err := Merge(ctx, sysextOpts(r, "no"))
		must(t, err)
		if len(res.Merged) != 1 {
			t.Fatalf("merged %v skipped %v", res.Merged, res.Skipped)
		}
		if b, err := os.ReadFile(filepath.Join(r, "usr/share/gpu")); err != nil || string(b) != "gpu\n" {
			t.Fatalf("usr partition content: %q %v", b, err)
		}
		_, err = Unmerge(ctx, sysextOpts(r, "no"))
		must(t, err)
	})
	t.Run("read-only-hierarchy", func(t *testing.T) {
		r := testRoot(t, "none")
		must(t, os.MkdirAll(filepath.Join(r, "usr/bin"), 0o755))
		write(t, filepath.Join(r, "usr/bin/hosttool"), "x")
		sysextImage(t, r, "tools", false)
		usr := filepath.Join(r, "usr")
		must(t, unix.Mount(usr, usr, "", unix.MS_BIND, ""))
		must(t, unix.Mount("", usr, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
		_, err := Merge(ctx, sysextOpts(r, "no"))
		must(t, err)
		if _, err := os.Stat(filepath.Join(r, "usr/share/tools")); err != nil {
			t.Fatal(err)
		}
		_, err = Unmerge(ctx, sysextOpts(r, "no"))
		must(t, err)
		// An upper on a read-only fs is refused, as systemd does (EROFS).
		ro := filepath.Join(r, "var/lib/extensions.mutable")
		must(t, os.MkdirAll(filepath.Join(ro, "usr"), 0o755))
		must(t, unix.Mount(ro, ro, "", unix.MS_BIND, ""))
		must(t, unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""))
		if _, err := Merge(ctx, sysextOpts(r, "auto")); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("merge with a read-only upper: %v", err)
		}
		if _, err := os.Stat(filepath.Join(r, "usr/.systemd-sysext")); err == nil {
			t.Fatal("failed merge left a merge")
		}
	})
}

// TestGoldenShape checks our metadata against systemd 262's golden files
// for the dir1+sq1 / upper-is-etc case: confexts and work_dir byte-equal,
// dev in the same format (its value is per mount), origin with the same
// structure (ids differ per run).
func TestGoldenShape(t *testing.T) {
	const golden = "testdata/golden262-meta/dir1+sq1_upper-is-etc."
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	rawImage(t, r, "squashfs", "sq1")
	_, err := Merge(context.Background(), opts(r, "yes"))
	must(t, err)
	for _, f := range []string{"confexts", "work_dir"} {
		want, err := os.ReadFile(golden + f)
		must(t, err)
		got, _ := readMeta(t, r, f)
		if got = plainWorkDir(got); got != string(want) {
			t.Errorf("%s = %q, golden %q", f, got, want)
		}
	}
	checkDev(t, r)
	if _, ok := readMeta(t, r, "backing"); ok {
		t.Error("backing written with /etc as upper (golden has none)")
	}
	ours, _ := readMeta(t, r, "origin")
	gold, err := os.ReadFile("record/testdata/golden262/dir1+sq1_upper-is-etc.origin")
	must(t, err)
	od, err := record.ParseOrigin(strings.NewReader(ours))
	must(t, err)
	gd, err := record.ParseOrigin(bytes.NewReader(gold))
	must(t, err)
	oo, err := od.Origin()
	must(t, err)
	go_, err := gd.Origin()
	must(t, err)
	if oo.Mode != go_.Mode || oo.MutableDirs["/etc"] != go_.MutableDirs["/etc"] || len(oo.Extensions) != len(go_.Extensions) {
		t.Fatalf("origin differs from golden:\n%s\ngolden:\n%s", ours, gold)
	}
	for i := range oo.Extensions {
		a, b := oo.Extensions[i], go_.Extensions[i]
		if a.Name != b.Name || a.Path != b.Path || a.HasHandle != b.HasHandle || (a.Mtime == 0) != (b.Mtime == 0) || a.OnMountID < 1<<31 {
			t.Errorf("extension %d: ours %+v golden %+v", i, a, b)
		}
	}
	// Same layout as systemd: tab indentation and " : ".
	if !strings.Contains(ours, "\t\"mutable\" : {\n\t\t\"mode\" : \"yes\",") || !strings.HasSuffix(ours, "}\n}\n") {
		t.Errorf("origin layout differs:\n%s", ours)
	}
}

// TestGoldenSeparateUpper checks work_dir and confexts for the layout
// with a real /var/lib/extensions.mutable/etc directory.
func TestGoldenSeparateUpper(t *testing.T) {
	const golden = "testdata/golden262-meta/dir1+sq1_separate-upper."
	r := testRoot(t, "separate")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	rawImage(t, r, "squashfs", "sq1")
	_, err := Merge(context.Background(), opts(r, "yes"))
	must(t, err)
	for _, f := range []string{"confexts", "work_dir"} {
		want, err := os.ReadFile(golden + f)
		must(t, err)
		if got, _ := readMeta(t, r, f); plainWorkDir(got) != string(want) {
			t.Errorf("%s = %q, golden %q", f, got, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(r, "etc/hostfile")); err != nil || string(b) != "host\n" {
		t.Fatalf("host /etc not a lower: %q %v", b, err)
	}
}

// TestCLIOutput runs the binary and compares its lines with systemd's
// (golden merge.out, refresh-nochange.out, refresh-always.out, unmerge.out).
func TestCLIOutput(t *testing.T) {
	// The test build, for its /dev/kmsg redirection: the operation log
	// goes to /dev/null and stderr holds only systemd's lines.
	bin := testutil.BuildTestHooksBinary(t)
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	rawImage(t, r, "squashfs", "sq1")
	state := t.TempDir()
	runCLI := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"confext", "--root=" + r}, args...)...)
		cmd.Env = []string{"EXT_SETUP_ROOT_STATE_DIR=" + state, "EXT_SETUP_ROOT_LOG=kmsg", "EXT_SETUP_ROOT_DEV_KMSG=/dev/null"}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	d := r
	cases := []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--mutable=yes", "merge"}, "Using extensions 'dir1', 'sq1.raw'.\nMerged extensions into '" + d + "/etc'.\n", 0},
		{[]string{"--mutable=yes", "merge"}, "ext-setup-root: hierarchy '/etc' is already merged: device or resource busy\n", 1},
		{[]string{"--mutable=yes", "refresh"}, "Skipping extension refresh because no change was found, use --always-refresh=yes to always do a refresh.\n", 0},
		{[]string{"--mutable=yes", "--always-refresh=yes", "refresh"}, "Using extensions 'dir1', 'sq1.raw'.\nUnmerged '" + d + "/etc'.\nMerged extensions into '" + d + "/etc'.\n", 0},
		{[]string{"unmerge"}, "Unmerged '" + d + "/etc'.\n", 0},
		{[]string{"unmerge"}, "", 0},
		{[]string{"--mutable=bogus", "merge"}, "", 1},
		{[]string{"--json=xml", "status"}, "", 2},
	}
	for _, c := range cases {
		_, stderr, code := runCLI(c.args...)
		if code != c.code || (c.want != "" && stderr != c.want) || (c.want == "" && c.code == 0 && stderr != "") {
			t.Errorf("%v: exit %d stderr %q, want exit %d %q", c.args, code, stderr, c.code, c.want)
		}
	}
	runCLI("--mutable=yes", "merge")
	out, _, _ := runCLI("--json=short", "status")
	if !strings.HasPrefix(out, `[{"hierarchy":"/etc","extensions":["dir1","sq1"],"since":`) {
		t.Errorf("status --json=short: %q", out)
	}
	out, _, _ = runCLI("status")
	if !strings.HasPrefix(out, "HIERARCHY EXTENSIONS SINCE\n/etc      dir1       ") || !strings.Contains(out, "\n          sq1        \n") {
		t.Errorf("status table:\n%q", out)
	}
	out, _, _ = runCLI("list")
	if !strings.HasPrefix(out, "NAME TYPE      PATH") || !strings.Contains(out, "\nsq1  raw       "+d+"/usr/lib/confexts/sq1.raw ") {
		t.Errorf("list table:\n%s", out)
	}
	runCLI("unmerge")
	out, _, _ = runCLI("--json=short", "status")
	if out != `[{"hierarchy":"/etc","extensions":[],"since":null}]`+"\n" {
		t.Errorf("status when not merged: %q", out)
	}
}

// TestSubmountsKept bind-mounts a file over /etc/hostfile (like a
// machine-id bind) on top of the merge and checks that it survives a
// replacement (beneath and fallback) and the unmerge.
func TestSubmountsKept(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	ctx := context.Background()
	_, err := Merge(ctx, opts(r, "yes"))
	must(t, err)
	src := filepath.Join(t.TempDir(), "bound")
	write(t, src, "bound\n")
	hf := filepath.Join(r, "etc/hostfile")
	must(t, unix.Mount(src, hf, "", unix.MS_BIND, ""))
	check := func(when string) {
		t.Helper()
		if b, err := os.ReadFile(hf); err != nil || string(b) != "bound\n" {
			t.Fatalf("%s: /etc/hostfile = %q, %v; want the bind mount", when, b, err)
		}
	}
	check("after merge")
	o := opts(r, "yes")
	o.AlwaysRefresh = true
	_, err = Refresh(ctx, o)
	must(t, err)
	check("after beneath replacement")
	o.NoBeneath = true
	_, err = Refresh(ctx, o)
	must(t, err)
	check("after fallback replacement")
	_, err = Unmerge(ctx, o)
	must(t, err)
	check("after unmerge")
	if _, err := os.Stat(filepath.Join(r, "etc/dir1.conf")); err == nil {
		t.Fatal("still merged")
	}
}

// TestStackedHierarchyRefused: /etc is its own mount (tmpfs) under the
// merge; a replacement cannot reach it below the merge and must fail
// clearly, leaving the merge in place.
func TestStackedHierarchyRefused(t *testing.T) {
	r := testRoot(t, "none")
	etc := filepath.Join(r, "etc")
	must(t, unix.Mount("tmpfs", etc, "tmpfs", 0, ""))
	write(t, filepath.Join(etc, "os-release"), "ID=testos\nVERSION_ID=1.0\n")
	dirImage(t, r, "dir1", "ID=_any\n")
	ctx := context.Background()
	_, err := Merge(ctx, opts(r, "no"))
	must(t, err)
	o := opts(r, "no")
	o.AlwaysRefresh = true
	if _, err := Refresh(ctx, o); err == nil || !strings.Contains(err.Error(), "unmerge first") {
		t.Fatalf("refresh over a stacked /etc: %v", err)
	}
	if _, err := os.Stat(filepath.Join(etc, "dir1.conf")); err != nil {
		t.Fatal("merge lost after the refused refresh")
	}
	_, err = Unmerge(ctx, o)
	must(t, err)
	if _, err := os.Stat(filepath.Join(etc, "os-release")); err != nil {
		t.Fatal("the /etc mount is gone after unmerge")
	}
}

// TestUnchangedRefreshNeedsNoLoop: deciding "unchanged" after our own
// merge must not attach loop devices (identities come from the image
// files and the state file).
func TestUnchangedRefreshNeedsNoLoop(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	rawImage(t, r, "squashfs", "sq1")
	rawImage(t, r, "erofs", "er1")
	ctx := context.Background()
	_, err := Merge(ctx, opts(r, "yes"))
	must(t, err)
	var logb bytes.Buffer
	o := opts(r, "yes")
	o.Log = oplog.New(oplog.WriterSink{W: &logb})
	res, err := Refresh(ctx, o)
	must(t, err)
	if !res.Unchanged {
		t.Fatal("not skipped")
	}
	if strings.Contains(logb.String(), "loop device") {
		t.Fatalf("unchanged refresh attached a loop device:\n%s", logb.String())
	}
}

// TestZeroImagesMutable: no image and mode auto with the /etc symlink
// still merges (systemd: "No extensions found, proceeding in mutable
// mode."), with an empty confexts file and no "extensions" in origin.
func TestZeroImagesMutable(t *testing.T) {
	r := testRoot(t, "symlink")
	var info bytes.Buffer
	o := opts(r, "auto")
	o.Info = &info
	res, err := Merge(context.Background(), o)
	must(t, err)
	if len(res.Hierarchies) != 1 || !strings.Contains(info.String(), "No extensions found, proceeding in mutable mode.") {
		t.Fatalf("res %+v, output %q", res, info.String())
	}
	if s, ok := readMeta(t, r, "confexts"); !ok || s != "" {
		t.Fatalf("confexts %q %v", s, ok)
	}
	if s, _ := readMeta(t, r, "origin"); strings.Contains(s, "extensions") {
		t.Fatalf("origin with extensions:\n%s", s)
	}
	res, err = Refresh(context.Background(), opts(r, "auto"))
	must(t, err)
	if !res.Unchanged {
		t.Fatal("refresh of a zero-image merge did not skip")
	}
}

// TestAttrsModeAndOptions: --noexec toggles MOUNT_ATTR_NOEXEC, the merged
// root takes the host hierarchy's mode, and the overlay options variable
// replaces the defaults and is recorded in origin.
func TestAttrsModeAndOptions(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=_any\n")
	must(t, os.Chmod(filepath.Join(r, "etc"), 0o750))
	ctx := context.Background()
	for _, c := range []struct {
		mode   string
		noexec *bool
		want   bool // ST_NOEXEC
	}{{"no", nil, true}, {"no", new(bool), false}, {"yes", nil, true}} {
		o := opts(r, c.mode)
		o.Noexec = c.noexec
		o.Getenv = func(k string) string {
			if k == config.Confext.OverlayOptionsEnv {
				return "redirect_dir=on"
			}
			return ""
		}
		_, err := Merge(ctx, o)
		must(t, err)
		var sfs unix.Statfs_t
		must(t, unix.Statfs(filepath.Join(r, "etc"), &sfs))
		if (sfs.Flags&unix.ST_NOEXEC != 0) != c.want {
			t.Errorf("mode %s noexec %v: ST_NOEXEC=%v", c.mode, c.noexec, sfs.Flags&unix.ST_NOEXEC != 0)
		}
		var st unix.Stat_t
		must(t, unix.Stat(filepath.Join(r, "etc"), &st))
		if st.Mode&0o777 != 0o750 {
			t.Errorf("mode %s: merged /etc mode %o, want 750", c.mode, st.Mode&0o777)
		}
		if s, _ := readMeta(t, r, "origin"); !strings.Contains(s, "\"mountOptions\" : \"redirect_dir=on\"") {
			t.Errorf("origin lacks mountOptions:\n%s", s)
		}
		_, err = Unmerge(ctx, o)
		must(t, err)
	}
}

package systemd262

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// The sysext differential: systemd-sysext 262 and ext-setup-root's sysext on
// the same root and the same images must produce the same merged /usr and
// /opt trees, the same metadata and the same origin record, and each must
// recognise (skip, unmerge) the other's merge.

// sysextMeta is the metadata directory of a sysext merge.
const sysextMeta = ".systemd-sysext"

// sysextHiers are sysext's default hierarchies, relative to the root.
var sysextHiers = []string{"usr", "opt"}

// Sysext runs systemd-sysext inside the chroot with args.
func (e *Env) Sysext(env []string, args ...string) (Result, error) {
	cmd := exec.Command("/usr/bin/systemd-sysext", args...)
	cmd.Dir = "/"
	cmd.Env = cleanEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: e.Chroot}
	r, err := runCmd(cmd)
	r.Args = append([]string{"systemd-sysext"}, args...)
	return r, err
}

func sdSysext(t *testing.T, e *Env, args ...string) Result {
	t.Helper()
	r, err := e.Sysext(nil, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Logf("%s", r)
	return r
}

// sysextImage is one sysext of the fixture: a directory or a raw image in
// /var/lib/extensions with files under usr/ and, if opt, opt/.
type sysextImage struct {
	name, kind string
	opt        bool
	release    string
}

// buildSysextRoot writes the host tree (os-release, files in /usr and
// /opt) and the images into root (a host path).
func buildSysextRoot(t *testing.T, root string, imgs []sysextImage) {
	t.Helper()
	for p, c := range map[string]string{
		"etc/os-release":           "ID=testos\nVERSION_ID=1.0\n",
		"usr/lib/os-release":       "ID=testos\nVERSION_ID=1.0\n",
		"usr/bin/hosttool":         "host tool\n",
		"usr/share/shared/file":    "from host /usr\n",
		"opt/hostapp/app":          "host app\n",
		"var/lib/extensions/.keep": "",
	} {
		if err := writeFile(filepath.Join(root, p), c, 0o644, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	tmp := t.TempDir()
	for _, im := range imgs {
		dir := filepath.Join(root, "var/lib/extensions", im.name)
		if im.kind != KindDir {
			dir = filepath.Join(tmp, im.name)
		}
		rel := im.release
		if rel == "" {
			rel = "ID=_any\n"
		}
		files := []struct {
			p, c string
			mode os.FileMode
		}{
			{"usr/lib/extension-release.d/extension-release." + im.name, rel, 0o644},
			{"usr/share/" + im.name + "/data", im.name + "\n", 0o644},
			{"usr/share/shared/file", "from " + im.name + "\n", 0o644},
			{"usr/lib/" + im.name + "/secret", "secret\n", 0o600},
		}
		if im.opt {
			files = append(files, struct {
				p, c string
				mode os.FileMode
			}{"opt/" + im.name + "/run", "#!/bin/sh\n", 0o755})
		}
		for _, f := range files {
			if err := writeFile(filepath.Join(dir, f.p), f.c, f.mode, 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("data", filepath.Join(dir, "usr/share", im.name, "link")); err != nil {
			t.Fatal(err)
		}
		if im.kind == KindDir {
			continue
		}
		out := filepath.Join(root, "var/lib/extensions", im.name+".raw")
		var cmd *exec.Cmd
		if im.kind == KindSquashfs {
			cmd = exec.Command("mksquashfs", dir, out, "-noappend", "-quiet", "-no-progress")
		} else {
			cmd = exec.Command("mkfs.erofs", "--quiet", out, dir)
		}
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, o)
		}
	}
}

// standardSysexts: a directory, a squashfs and an erofs image, two of them
// with /opt content, overlapping on usr/share/shared/file.
func standardSysexts() []sysextImage {
	return []sysextImage{
		{name: "sdir", kind: KindDir, opt: true, release: "ID=testos\nVERSION_ID=1.0\n"},
		{name: "ssq", kind: KindSquashfs, opt: true},
		{name: "ser", kind: KindErofs},
	}
}

func snapSysext(t *testing.T, root string) map[string]*Snapshot {
	t.Helper()
	out := map[string]*Snapshot{}
	for _, h := range sysextHiers {
		s, err := TakeSnapshotAt(root, h, sysextMeta)
		if err != nil {
			t.Fatal(err)
		}
		out[h] = s
	}
	return out
}

func sysextIDs(t *testing.T, root string) string {
	t.Helper()
	var ids []string
	for _, h := range sysextHiers {
		id, err := UniqueMountID(filepath.Join(root, h))
		if err != nil {
			t.Fatal(err)
		}
		if id == 0 {
			testutil.Gate(t, "kernel without STATX_MNT_ID_UNIQUE (need Linux 6.8+)")
		}
		ids = append(ids, fmt.Sprint(id))
	}
	return strings.Join(ids, ",")
}

// requireSysextUnmerged checks that nothing is mounted on /usr and /opt.
func requireSysextUnmerged(t *testing.T, who, root string) {
	t.Helper()
	for _, h := range sysextHiers {
		if n := overlaysOn(filepath.Join(root, h)); n != 0 {
			t.Errorf("%s: %d overlays still on /%s", who, n, h)
		}
		if _, err := os.Stat(filepath.Join(root, h, sysextMeta)); err == nil {
			t.Errorf("%s: /%s still carries %s", who, h, sysextMeta)
		}
	}
}

// TestSysextDifferential runs, per mutable mode, on ONE root: systemd-sysext
// merges; its own refresh skips (harness); our refresh skips its merge and
// our unmerge removes it; then we merge: the /usr and /opt trees, metadata
// files, origin record (as JSON) and mount shapes equal systemd's; systemd's
// refresh skips ours and its unmerge removes it.
func TestSysextDifferential(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)
	for _, mode := range []string{"no", "yes", "auto"} {
		t.Run(mode, func(t *testing.T) {
			r := newRoot(t, e, Fixture{})
			buildSysextRoot(t, r.Host, standardSysexts())
			defer func() {
				for _, h := range sysextHiers {
					UnmountBelow(filepath.Join(r.Host, h))
					unix.Unmount(filepath.Join(r.Host, h), unix.MNT_DETACH)
				}
			}()
			sdRoot, ourRoot, mutable := "--root="+r.In, "--root="+r.Host, "--mutable="+mode

			if res := sdSysext(t, e, sdRoot, mutable, "merge"); res.ExitCode != 0 {
				t.Fatalf("systemd merge: %s", res)
			}
			sdSnap := snapSysext(t, r.Host)
			for h, s := range sdSnap {
				if !s.DevMatches() {
					t.Fatalf("harness: systemd's merge of /%s has a dev file not matching st_dev", h)
				}
				if s.Origin == nil || len(s.Tree) < 5 {
					t.Fatalf("harness: systemd's merge of /%s: %d files, origin %v", h, len(s.Tree), s.Origin != nil)
				}
				t.Logf("systemd's /%s: %d files, metadata %d files, %d mounts", h, len(s.Tree), len(s.Meta), len(s.Mounts))
			}
			ids := sysextIDs(t, r.Host)
			if res := sdSysext(t, e, sdRoot, mutable, "refresh"); !strings.Contains(res.Output, SkipMessage) || sysextIDs(t, r.Host) != ids {
				t.Fatalf("harness: systemd's refresh of its own merge did not skip: %s", res)
			}
			if res := ours(t, bin, r.OurEnv, "sysext", ourRoot, mutable, "refresh"); res.ExitCode != 0 || sysextIDs(t, r.Host) != ids {
				t.Errorf("(b) our refresh did not skip systemd's unchanged merge: %s", res)
			}
			if res := ours(t, bin, r.OurEnv, "sysext", ourRoot, "unmerge"); res.ExitCode != 0 {
				t.Errorf("(d) our unmerge of systemd's merge: %s", res)
			}
			requireSysextUnmerged(t, "(d) our unmerge of systemd's merge", r.Host)
			if t.Failed() {
				t.FailNow()
			}

			if res := ours(t, bin, r.OurEnv, "sysext", ourRoot, mutable, "merge"); res.ExitCode != 0 {
				t.Fatalf("our merge: %s", res)
			}
			ourSnap := snapSysext(t, r.Host)
			for _, h := range sysextHiers {
				for _, d := range Diff(sdSnap[h], ourSnap[h], "systemd", "ours") {
					t.Errorf("(c) /%s: %s", h, d)
				}
			}
			ids = sysextIDs(t, r.Host)
			if res := sdSysext(t, e, sdRoot, mutable, "refresh"); !strings.Contains(res.Output, SkipMessage) || res.ExitCode != 0 || sysextIDs(t, r.Host) != ids {
				t.Errorf("(a) systemd's refresh did not skip our merge: %s", res)
			}
			if res := sdSysext(t, e, sdRoot, "unmerge"); res.ExitCode != 0 {
				t.Errorf("(d) systemd's unmerge of our merge: %s", res)
			}
			requireSysextUnmerged(t, "(d) systemd's unmerge of our merge", r.Host)
		})
	}
}

// TestSysextAllOrNothingVsSystemd (issue 8 item 6): the two cases of
// systemd's TEST-50-DISSECT.sysext where /usr could be merged but /opt
// cannot: a read-only /opt whose extensions.mutable/opt links to /opt itself
// under mode auto, and mode import with extensions.mutable/opt pointing at
// /opt. systemd-sysext 262 fails and leaves nothing merged; ours must do
// the same (before, ours exited 1 with /usr merged).
func TestSysextAllOrNothingVsSystemd(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)
	for _, c := range []struct{ name, mode string }{{"readonly-self-link-auto", "auto"}, {"import-self-link", "import"}} {
		t.Run(c.name, func(t *testing.T) {
			r := newRoot(t, e, Fixture{})
			buildSysextRoot(t, r.Host, []sysextImage{{name: "tools", kind: KindDir, opt: true}})
			mut := filepath.Join(r.Host, "var/lib/extensions.mutable")
			if err := os.MkdirAll(mut, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/opt", filepath.Join(mut, "opt")); err != nil {
				t.Fatal(err)
			}
			opt := filepath.Join(r.Host, "opt")
			if c.mode == "auto" {
				if err := unix.Mount(opt, opt, "", unix.MS_BIND, ""); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mount("", opt, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				for _, h := range sysextHiers {
					UnmountBelow(filepath.Join(r.Host, h))
				}
				unix.Unmount(opt, unix.MNT_DETACH)
			}()
			before := overlaysOn(filepath.Join(r.Host, "usr"))
			res := sdSysext(t, e, "--root="+r.In, "--mutable="+c.mode, "merge")
			if res.ExitCode == 0 {
				t.Fatalf("harness: systemd-sysext 262 merged: %s", res)
			}
			requireSysextUnmerged(t, "systemd-sysext 262 after its failed merge", r.Host)
			res = ours(t, bin, r.OurEnv, "sysext", "--root="+r.Host, "--mutable="+c.mode, "merge")
			if res.ExitCode == 0 {
				t.Fatalf("our merge succeeded where systemd's failed: %s", res)
			}
			requireSysextUnmerged(t, "ours after its failed merge", r.Host)
			if n := overlaysOn(filepath.Join(r.Host, "usr")); n != before {
				t.Errorf("%d overlays on /usr, had %d", n, before)
			}
		})
	}
}

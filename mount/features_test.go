package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestParseRelease(t *testing.T) {
	for r, want := range map[string][2]int{
		"6.1.0-28-amd64": {6, 1}, "6.12.57+deb13-amd64": {6, 12}, "6.18.44-fc-v1252": {6, 18},
		"7.2.0-1-amd64": {7, 2}, "5.15": {5, 15}, "6.6rc1": {6, 6},
	} {
		if got, ok := ParseRelease(r); !ok || got != want {
			t.Errorf("ParseRelease(%q) = %v %v, want %v", r, got, ok, want)
		}
	}
	for _, r := range []string{"", "6", "x.y.z", "6.x"} {
		if _, ok := ParseRelease(r); ok {
			t.Errorf("ParseRelease(%q) ok", r)
		}
	}
}

func TestCheckKernel(t *testing.T) {
	for v, ok := range map[[2]int]bool{{5, 15}: false, {6, 0}: false, {4, 19}: false, {6, 1}: true, {6, 12}: true, {7, 0}: true} {
		err := CheckKernel(Expected(v))
		if (err == nil) != ok {
			t.Errorf("CheckKernel(%v) = %v", v, err)
		}
		if err != nil && (!errors.Is(err, ErrKernelTooOld) || !strings.Contains(err.Error(), "6.1")) {
			t.Errorf("CheckKernel(%v) error %v lacks ErrKernelTooOld or the minimum", v, err)
		}
	}
}

func TestExpectedTable(t *testing.T) {
	k61, k612, k618 := Expected([2]int{6, 1}), Expected([2]int{6, 12}), Expected([2]int{6, 18})
	if k61.LayerFds || k61.LowerdirPlus || k61.Beneath || k61.DetachedLayers || k61.MntIDUnique || k61.OverlayNative {
		t.Errorf("6.1: %s", k61)
	}
	if k612.LayerFds || !k612.LowerdirPlus || !k612.Beneath || k612.DetachedLayers || !k612.MntIDUnique {
		t.Errorf("6.12: %s", k612)
	}
	if !k618.LayerFds || !k618.LowerdirPlus || !k618.Beneath || !k618.DetachedLayers || k618.Fallbacks() != "" {
		t.Errorf("6.18: %s fallbacks %q", k618, k618.Fallbacks())
	}
	if !strings.Contains(k61.Fallbacks(), "unmount-then-mount") {
		t.Errorf("6.1 fallbacks %q", k61.Fallbacks())
	}
}

func TestLowerdirString(t *testing.T) {
	if got := EscapeLayerPath(`/a b/c:d,e\f`); got != `/a b/c\:d\,e\\f` {
		t.Errorf("escape = %q", got)
	}
	f, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := LowerdirString([]Layer{{File: f}, {Path: "/x:y"}, {Path: "/z"}})
	if want := fmt.Sprintf(`%d:/x\:y:/z`, f.Fd()); got != want {
		t.Errorf("LowerdirString = %q, want %q", got, want)
	}
}

// TestProbeMatchesExpected checks the probe on the running kernel against
// the table of its release (the table the tests force for older kernels).
func TestProbeMatchesExpected(t *testing.T) {
	testutil.RequireRoot(t)
	got := Probe()
	t.Logf("probed: %s", got)
	if len(got.ProbeErrors) > 0 {
		t.Errorf("probe errors: %v", got.ProbeErrors)
	}
	want := Expected(got.Version)
	type row struct {
		name      string
		got, want bool
	}
	for _, r := range []row{{"overlay", got.Overlay, want.Overlay}, {"native", got.OverlayNative, want.OverlayNative},
		{"layer fds", got.LayerFds, want.LayerFds}, {"lowerdir+", got.LowerdirPlus, want.LowerdirPlus},
		{"detached layers", got.DetachedLayers, want.DetachedLayers}, {"detached tree", got.DetachedTree, want.DetachedTree},
		{"beneath", got.Beneath, want.Beneath},
		{"mnt id unique", got.MntIDUnique, want.MntIDUnique}} {
		if r.got != r.want {
			t.Errorf("%s: probed %v, Expected(%v) says %v", r.name, r.got, got.Version, r.want)
		}
	}
	for _, o := range got.OverlayOptions {
		if !o.Accepted {
			t.Errorf("overlay option %s refused", o.Option)
		}
	}
	if Kernel() != Kernel() {
		t.Error("Kernel() probes more than once")
	}
}

// detachedDirs makes a detached tmpfs with the given directories (each
// holding a file "f" with its name and one named after it) and returns
// O_PATH fds of them, as the extension engine's meta layer is made.
func detachedDirs(t *testing.T, names ...string) []*os.File {
	t.Helper()
	c, err := NewFS("tmpfs", "test-detached")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Mount(0)
	if err != nil {
		t.Fatal(err)
	}
	// Closing the last fd of a detached mount dissolves it.
	t.Cleanup(func() { m.Close() })
	root, err := os.OpenFile(procFdPath(m), os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var out []*os.File
	for _, n := range names {
		if err := unix.Mkdirat(int(root.Fd()), n, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, fn := range []string{"f", n} {
			fd, err := unix.Openat(int(root.Fd()), n+"/"+fn, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Write(fd, []byte(n))
			unix.Close(fd)
		}
		fd, err := unix.Openat(int(root.Fd()), n, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "detached "+n)
		t.Cleanup(func() { f.Close() })
		out = append(out, f)
	}
	return out
}

// TestOverlayOldKernelPaths builds, on this kernel, the overlay the engine
// builds (a meta layer on a detached tmpfs, image-like layers, the upper
// and work dir reached through a detached clone) with the feature table of
// each supported older kernel forced, so that every fallback path runs:
// /proc/self/fd paths, the single lowerdir= string, the staging of
// detached layers.
func TestOverlayOldKernelPaths(t *testing.T) {
	testutil.RequireRoot(t)
	for _, v := range [][2]int{{6, 1}, {6, 6}, {6, 12}, {6, 13}, {6, 18}} {
		t.Run(fmt.Sprintf("%d.%d", v[0], v[1]), func(t *testing.T) {
			base := testutil.Tmpfs(t)
			defer func(p []string) { stagingParents = p }(stagingParents)
			run := mkdir(t, filepath.Join(base, "run"))
			stagingParents = []string{run}

			lower := detachedDirs(t, "meta", "img1", "img2")
			attachedLow := mkdir(t, filepath.Join(base, "host-low"))
			writeFile(t, filepath.Join(attachedLow, "f"), "host")
			writeFile(t, filepath.Join(attachedLow, "host-only"), "h")
			hl, err := os.Open(attachedLow)
			if err != nil {
				t.Fatal(err)
			}
			defer hl.Close()
			// Upper and work on a detached clone of an attached tmpfs,
			// as a replacement reaches /etc below the old merge.
			mkdir(t, filepath.Join(base, "up"))
			mkdir(t, filepath.Join(base, "wk"))
			clone, err := BindDetached(openPath(t, base), false)
			if err != nil {
				t.Fatal(err)
			}
			defer clone.Close()
			up, err := os.OpenFile(procFdPath(clone)+"/up", unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer up.Close()
			wk, err := os.OpenFile(procFdPath(clone)+"/wk", unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer wk.Close()

			layers := []Layer{{File: lower[0]}, {File: lower[1]}, {File: lower[2]}, {File: hl}}
			mnt, err := MountOverlay(OverlaySpec{Source: "test", Lower: layers, Upper: &Layer{File: up}, Work: &Layer{File: wk},
				Options: []string{"redirect_dir=on", "metacopy=off", "index=off"}, Features: Expected(v)})
			if err != nil {
				t.Fatal(err)
			}
			defer mnt.Close()
			target := mkdir(t, filepath.Join(base, "merged"))
			attachAt(t, mnt, target)
			for f, want := range map[string]string{"f": "meta", "img1": "img1", "img2": "img2", "host-only": "h"} {
				if got := readFile(t, filepath.Join(target, f)); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			writeFile(t, filepath.Join(target, "new"), "n")
			if got := readFile(t, filepath.Join(base, "up", "new")); got != "n" {
				t.Errorf("upper/new = %q", got)
			}
			// The staging tmpfs is gone and its directory removed.
			if ents, _ := os.ReadDir(run); len(ents) != 0 {
				t.Errorf("staging left behind in %s: %v", run, ents)
			}
			infos, err := ReadMountinfo()
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range infos {
				if in.Source == "ext-setup-root-layers" {
					t.Errorf("staging mount left: %+v", in)
				}
			}
		})
	}
}

// TestLowerdirStringLimit: without lowerdir+, ~60 fd layers fit into the
// 255 bytes fsconfig takes; 128 fail with ErrLowerdirTooLong before
// anything is mounted, and path layers are escaped.
func TestLowerdirStringLimit(t *testing.T) {
	testutil.RequireRoot(t)
	base := testutil.Tmpfs(t)
	k66 := Expected([2]int{6, 6})
	var files []*os.File
	for i := 0; i < 128; i++ {
		d := mkdir(t, filepath.Join(base, oddName(i)))
		writeFile(t, filepath.Join(d, "shadow"), fmt.Sprint(i))
		f, err := os.OpenFile(d, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	layers := func(n int) []Layer {
		var ls []Layer
		for _, f := range files[:n] {
			ls = append(ls, Layer{File: f})
		}
		return ls
	}
	n := 50
	mnt, err := MountOverlay(OverlaySpec{Lower: layers(n), Features: k66})
	if err != nil {
		t.Fatalf("%d layers without lowerdir+: %v", n, err)
	}
	target := mkdir(t, filepath.Join(base, "merged"))
	attachAt(t, mnt, target)
	mnt.Close()
	if got := readFile(t, filepath.Join(target, "shadow")); got != "0" {
		t.Errorf("shadow = %q", got)
	}
	_, err = MountOverlay(OverlaySpec{Lower: layers(128), Features: k66})
	if !errors.Is(err, ErrLowerdirTooLong) || !strings.Contains(err.Error(), "128 layers") {
		t.Fatalf("128 layers without lowerdir+: %v, want ErrLowerdirTooLong", err)
	}
	// Path layers with the characters overlayfs needs escaped.
	odd := []Layer{{Path: filepath.Join(base, oddName(1))}, {Path: filepath.Join(base, oddName(2))}}
	mnt, err = MountOverlay(OverlaySpec{Lower: odd, Features: k66})
	if err != nil {
		t.Fatalf("escaped path layers: %v", err)
	}
	target2 := mkdir(t, filepath.Join(base, "merged2"))
	attachAt(t, mnt, target2)
	mnt.Close()
	if got := readFile(t, filepath.Join(target2, "shadow")); got != "1" {
		t.Errorf("shadow = %q", got)
	}
}

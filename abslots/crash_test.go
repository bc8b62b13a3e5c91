package abslots

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestCrashAtEveryStep runs the real binary on the update scenario (a
// previous image moves off the OEM store, the new one onto it, links flip,
// migration runs), counts its side-effect steps from the step log, then for
// every step N kills it just before step N (SIGKILL), reruns it, and
// checks the final state: the same as an uninterrupted run, with every
// image present exactly once and no temporary files left.
func TestCrashAtEveryStep(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildTestHooksBinary(t)
	sc := scenarios()[findScenario(t, "2 image on root, previous on OEM")]
	in := merge(sc.in, tree{
		"/oem/sysext/migrate-oem-test":                   "",
		"/usr/share/flatcar/oems/test":                   "/oem/bin/old-agent\n",
		"/oem/bin/old-agent":                             "agent",
		"/usr/share/flatcar/enabled-sysext.conf":         "zfs\n",
		"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw": "zfs2",
		"/etc/extensions/flatcar-zfs.raw":                "@/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw",
	})
	want := merge(sc.want, tree{"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw": "zfs2",
		"/etc/extensions/flatcar-zfs.raw": "@/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw"})

	// /oem is its own filesystem, as on Flatcar, so moves copy.
	fixture := func() string {
		dir := testutil.Tmpfs(t)
		oem := filepath.Join(dir, "oem")
		os.Mkdir(oem, 0o755)
		if err := unix.Mount("tmpfs", oem, "tmpfs", 0, "size=4m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(oem, unix.MNT_DETACH) })
		writeTree(t, dir, in)
		return dir
	}
	testutil.CrashLoop{Bin: bin, Args: []string{"links"}, Fixture: fixture, MinSteps: 5,
		Check: func(dir, when string, done bool) {
			t.Helper()
			if done {
				if d := diffTrees(want, snapshot(t, dir)); d != "" {
					t.Fatalf("%s: state differs:\n%s", when, d)
				}
			}
			checkImagesOnce(t, dir, when)
		},
		IsTemp: func(name string) bool { return strings.Contains(name, "tmp") && name != "tmp" },
	}.Run(t)
}

// checkImagesOnce requires every image of the fixture to exist at least
// once after a crash (never lost) and, once a run has completed, exactly
// once; after a kill a complete duplicate may exist until the rerun.
func checkImagesOnce(t *testing.T, dir, when string) {
	t.Helper()
	for _, img := range []string{"oem-test-" + v1 + ".raw", "oem-test-" + v2 + ".raw"} {
		count := 0
		for _, d := range []string{"oem/sysext", "etc/flatcar/oem-sysext"} {
			if b, err := os.ReadFile(filepath.Join(dir, d, img)); err == nil {
				count++
				if want := map[bool]string{true: "v1", false: "v2"}[strings.Contains(img, v1)]; string(b) != want {
					t.Errorf("%s: %s/%s has content %q", when, d, img, b)
				}
			}
		}
		if count == 0 {
			t.Fatalf("%s: image %s lost", when, img)
		}
	}
}

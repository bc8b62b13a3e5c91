package abslots

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

	run := func(root string, env ...string) error {
		c := exec.Command(bin, "links", "--root="+root)
		c.Env = append([]string{"PATH=/usr/bin", "EXT_SETUP_ROOT_LOG=stderr", "EXT_SETUP_ROOT_PROC_CMDLINE=/dev/null"}, env...)
		out, err := c.CombinedOutput()
		if err != nil && testing.Verbose() {
			t.Logf("%s", out)
		}
		return err
	}
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
	// Count the steps of an uninterrupted run.
	dir := fixture()
	stepLog := filepath.Join(t.TempDir(), "steps")
	if err := run(dir, "EXT_SETUP_ROOT_STEP_LOG="+stepLog); err != nil {
		t.Fatalf("uninterrupted run: %v", err)
	}
	if d := diffTrees(want, snapshot(t, dir)); d != "" {
		t.Fatalf("uninterrupted run: state differs:\n%s", d)
	}
	steps := readLines(t, stepLog)
	if len(steps) < 5 {
		t.Fatalf("only %d steps logged; fault injection not wired?", len(steps))
	}
	for n := 1; n <= len(steps); n++ {
		dir := fixture()
		err := run(dir, "EXT_SETUP_ROOT_KILL_AT_STEP="+itoa(n))
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("step %d (%s): want the process killed, got %v", n, steps[n-1], err)
		}
		checkImagesOnce(t, dir, n, steps[n-1])
		if err := run(dir); err != nil {
			t.Fatalf("rerun after kill at step %d (%s): %v", n, steps[n-1], err)
		}
		if d := diffTrees(want, snapshot(t, dir)); d != "" {
			t.Fatalf("rerun after kill at step %d (%s): state differs:\n%s", n, steps[n-1], d)
		}
		checkImagesOnce(t, dir, n, steps[n-1])
		if tmp := findTemps(dir); len(tmp) > 0 {
			t.Errorf("after kill at step %d and rerun: temporary files left: %v", n, tmp)
		}
	}
	t.Logf("killed and recovered at each of %d steps", len(steps))
}

// checkImagesOnce requires every image of the fixture to exist at least
// once after a crash (never lost) and, once a run has completed, exactly
// once; after a kill a complete duplicate may exist until the rerun.
func checkImagesOnce(t *testing.T, dir string, n int, step string) {
	t.Helper()
	for _, img := range []string{"oem-test-" + v1 + ".raw", "oem-test-" + v2 + ".raw"} {
		count := 0
		for _, d := range []string{"oem/sysext", "etc/flatcar/oem-sysext"} {
			if b, err := os.ReadFile(filepath.Join(dir, d, img)); err == nil {
				count++
				if want := map[bool]string{true: "v1", false: "v2"}[strings.Contains(img, v1)]; string(b) != want {
					t.Errorf("step %d (%s): %s/%s has content %q", n, step, d, img, b)
				}
			}
		}
		if count == 0 {
			t.Fatalf("step %d (%s): image %s lost", n, step, img)
		}
	}
}

func findTemps(dir string) []string {
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), "tmp") && fi.Name() != "tmp" {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func readLines(t *testing.T, p string) []string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var l []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l = append(l, sc.Text())
	}
	return l
}

func itoa(n int) string { return strconv.Itoa(n) }

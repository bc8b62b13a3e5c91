package fetch

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// TestFetchCrashAtEveryStepRoot runs `ext-setup-root fetch` (the
// testhooks build) against a loopback HTTPS server, counts its disk
// steps, then kills it before each step in turn: after every kill the
// image is either absent or complete and verified, never partial; a rerun
// places it and leaves no temporary file.
func TestFetchCrashAtEveryStepRoot(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildTestHooksBinary(t)
	e := newEnv(t)
	img := sysextImage(t, "oem-test", "flatcar", testVersion, arch)
	e.serve("oem-test", buildPayload(t, img, payloadtest.KeyA()))
	final := "etc/flatcar/oem-sysext/oem-test-" + testVersion + ".raw"
	fixture := func() string {
		dir := testutil.Tmpfs(t)
		testutil.WriteTree(t, dir, map[string]string{
			"usr/lib/os-release": "ID=flatcar\nVERSION=" + testVersion + "\nVERSION_ID=" + testVersion + "\nFLATCAR_BOARD=" + testBoard + "\n",
			"usr/share/update_engine/update-payload-key.pub.pem": string(payloadtest.PublicPEM(payloadtest.KeyA())),
			"oem/oem-release":              "ID=test\n",
			"oem/sysext/active-oem-test":   "",
			"etc/ext-setup-root/boot.toml": "[fetch]\nbase_url = \"" + e.srv.URL + "\"\nca_bundle = \"" + e.cfg.CABundle + "\"\nattempts = 1\n",
		})
		return dir
	}
	run := func(root string, env ...string) error {
		c := exec.Command(bin, "fetch", "--root="+root)
		c.Env = append([]string{"PATH=/usr/bin:/usr/sbin", "EXT_SETUP_ROOT_LOG=stderr", "EXT_SETUP_ROOT_PROC_CMDLINE=/dev/null"}, env...)
		out, err := c.CombinedOutput()
		if err != nil && testing.Verbose() {
			t.Logf("%s", out)
		}
		return err
	}
	check := func(dir, when string, mustExist bool) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, final))
		switch {
		case err == nil && !bytes.Equal(b, img):
			t.Fatalf("%s: %s holds %d bytes that are not the verified image", when, final, len(b))
		case err != nil && mustExist:
			t.Fatalf("%s: %v", when, err)
		}
	}
	dir := fixture()
	stepLog := filepath.Join(t.TempDir(), "steps")
	if err := run(dir, "EXT_SETUP_ROOT_STEP_LOG="+stepLog); err != nil {
		t.Fatalf("uninterrupted run: %v", err)
	}
	check(dir, "uninterrupted run", true)
	raw, _ := os.ReadFile(stepLog)
	steps := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(steps) < 6 {
		t.Fatalf("only %d steps logged: %q", len(steps), steps)
	}
	for n := 1; n <= len(steps); n++ {
		dir := fixture()
		err := run(dir, "EXT_SETUP_ROOT_KILL_AT_STEP="+strconv.Itoa(n))
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
			t.Fatalf("step %d (%s): want the process killed, got %v", n, steps[n-1], err)
		}
		check(dir, "killed before step "+steps[n-1], false)
		if err := run(dir); err != nil {
			t.Fatalf("rerun after kill at step %d (%s): %v", n, steps[n-1], err)
		}
		check(dir, "rerun after kill before step "+steps[n-1], true)
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && rootfs.IsTempName(fi.Name()) {
				t.Errorf("after kill at step %d (%s) and rerun: temp %s left", n, steps[n-1], p)
			}
			return nil
		})
	}
	t.Logf("killed and recovered at each of %d steps", len(steps))
}

package fetch

import (
	"bytes"
	"os"
	"path/filepath"
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
	testutil.CrashLoop{Bin: bin, Args: []string{"fetch"}, Fixture: fixture, MinSteps: 6,
		// The image is absent or complete and verified after a kill, there
		// after a completed run.
		Check: func(dir, when string, done bool) {
			t.Helper()
			b, err := os.ReadFile(filepath.Join(dir, final))
			switch {
			case err == nil && !bytes.Equal(b, img):
				t.Fatalf("%s: %s holds %d bytes that are not the verified image", when, final, len(b))
			case err != nil && done:
				t.Fatalf("%s: %v", when, err)
			}
		},
		IsTemp: rootfs.IsTempName,
	}.Run(t)
}

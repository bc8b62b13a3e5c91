// Package demo runs scripts/demo.sh, the README's first command (make
// demo), so that the newcomer's path is tested: with squashfs images (the
// packages make demo installs) and with the ext4 fallback used when
// squashfs-tools cannot be installed. Root tier.
package demo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "unshare", "mke2fs", "mksquashfs")
	testutil.RequireFilesystem(t, "overlay", "squashfs", "ext4")
	bin := testutil.BuildBinary(t)
	script, err := filepath.Abs("../../scripts/demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"squashfs", "ext4"} {
		t.Run(tool, func(t *testing.T) {
			c := exec.Command(script)
			c.Env = append(os.Environ(), "BIN="+bin, "DEMO_IMAGE_TOOL="+tool)
			out, err := c.CombinedOutput()
			s := string(out)
			if err != nil {
				t.Fatalf("demo: %v\n%s", err, s)
			}
			for _, want := range []string{
				// stage pre: both confexts merged over /etc
				"vendor default:   vendor default motd",
				"user confext:     server time.example.com",
				// stage post on slot A: links and the sysext merge
				"oem-demo.raw -> /oem/sysext/oem-demo-1000.0.0.raw",
				"flatcar-tools.raw -> /etc/flatcar/sysext/flatcar-tools-1000.0.0.raw",
				"OEM sysext:       oem-demo for 1000.0.0",
				// slot B: the links flip, the old OEM image moves off
				"oem-demo.raw -> /oem/sysext/oem-demo-1001.0.0.raw",
				"flatcar-tools.raw -> /etc/flatcar/sysext/flatcar-tools-1001.0.0.raw",
				"OEM sysext:       oem-demo for 1001.0.0",
				"Flatcar ext:      flatcar-tools for 1001.0.0",
				"user confext now: server ntp.example.org",
				"demo finished",
			} {
				if !strings.Contains(s, want) {
					t.Errorf("demo output lacks %q", want)
				}
			}
			if strings.Contains(s, "warning:") {
				t.Errorf("demo printed a warning")
			}
			if t.Failed() {
				t.Logf("%s", s)
			}
		})
	}
}

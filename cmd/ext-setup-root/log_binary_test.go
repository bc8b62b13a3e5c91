package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestLinksRefusalOnStderr runs the real binary the way a person does
// (stderr a pipe, no JOURNAL_STREAM, not in an initrd, no
// EXT_SETUP_ROOT_LOG): `links` on a root whose OEM ID is hostile must
// print its refusal on stderr. It used to go to /dev/kmsg only (issue 10
// item 4). The root is a temp dir; the run is a dry run.
func TestLinksRefusalOnStderr(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	bin := testutil.BuildBinary(t)
	root := t.TempDir()
	for p, s := range map[string]string{
		"usr/lib/os-release": "ID=flatcar\nVERSION=4000.0.0\nVERSION_ID=4000.0.0\n",
		"oem/oem-release":    "ID=../evil\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, "links", "--root="+root, "--dry-run")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	err := cmd.Run()
	out := stderr.String()
	if !strings.Contains(out, "../evil") || !strings.Contains(out, "OEM ID") {
		t.Fatalf("refusal of the hostile OEM ID not on stderr (err %v):\n%s", err, out)
	}
}

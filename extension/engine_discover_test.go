package extension

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// TestDiscoverSkipsLogged: entries discovery skips are logged, not
// dropped (issue 8 item 8): one that could not be examined (a symlink
// loop) as a warning, an expected one (not *.raw) at debug level.
func TestDiscoverSkipsLogged(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"run/confexts", "var/lib/confexts/good"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("loop.raw", filepath.Join(dir, "run/confexts/loop.raw")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "var/lib/confexts/readme.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := oplog.New(oplog.WriterSink{W: &buf})
	log.SetDebug(true)
	imgs, err := List(t.Context(), Options{Root: dir, Class: config.Confext, Log: log})
	if err != nil || len(imgs) != 1 || imgs[0].Name != "good" {
		t.Fatalf("List = %+v, %v", imgs, err)
	}
	var warnLoop, debugTxt bool
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "loop.raw") && strings.Contains(l, "skipped") && strings.Contains(strings.ToLower(l), "warn") {
			warnLoop = true
		}
		if strings.Contains(l, "readme.txt") && strings.Contains(l, "skipped") && strings.Contains(strings.ToLower(l), "debug") {
			debugTxt = true
		}
	}
	if !warnLoop || !debugTxt {
		t.Fatalf("skips not logged at the right level (loop warning %v, readme debug %v):\n%s", warnLoop, debugTxt, buf.String())
	}
}

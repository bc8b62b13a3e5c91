package boot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/prepare"
)

// TestPrepareDefaultsFromRawConfext: the dedup's vendor defaults come from
// a raw (squashfs) default confext, opened the way its merge opens it: a
// file in /etc identical to the image's goes, a differing one stays. Under
// an image policy that refuses the image (signed required), the defaults
// are not read and nothing is removed, with the refusal reported.
func TestPrepareDefaultsFromRawConfext(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name, policy string
		wantGone     bool
	}{
		{"default policy", "", true},
		{"signed required", "root=signed+absent:usr=signed+absent", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := flatcarRoot(t)
			testutil.WriteTree(t, root, map[string]string{
				"etc/flatcar-default.conf": "vendor default\n",
				"etc/mine.conf":            "mine\n",
			})
			cfg := prepare.Default()
			cfg.Dedup.DefaultsConfext = "00-flatcar-default"
			cfg.Dedup.DefaultsDirs = nil
			var log strings.Builder
			p := RealPreparer{Config: cfg, Log: oplog.New(oplog.WriterSink{W: &log}), Getenv: func(string) string { return "" }, ImagePolicy: tc.policy}
			res, err := p.Prepare(context.Background(), PrepareRequest{Root: root, Essential: DefaultEssential})
			_, serr := os.Stat(filepath.Join(root, "etc/flatcar-default.conf"))
			gone := os.IsNotExist(serr)
			if gone != tc.wantGone {
				t.Fatalf("identical file removed: %v, want %v (res %+v, err %v)\n%s", gone, tc.wantGone, res, err, log.String())
			}
			if b, err := os.ReadFile(filepath.Join(root, "etc/mine.conf")); err != nil || string(b) != "mine\n" {
				t.Errorf("user file: %q, %v", b, err)
			}
			if !tc.wantGone && err == nil && !strings.Contains(log.String()+strings.Join(res.Problems, "\n"), "policy") {
				t.Errorf("refusal not reported:\n%s", log.String())
			}
		})
	}
}

package abslots

import (
	"errors"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// TestFetchFailurePolicy: a failed fetch of an essential image fails the
// run (after everything else was applied) naming the image; an optional
// one is one error line and the run succeeds; nothing is linked for
// either.
func TestFetchFailurePolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		essential map[string]bool
		wantErr   string
	}{
		{"oem essential", map[string]bool{"test": true}, "essential oem image oem-test-" + v2 + ".raw could not be fetched: server down"},
		{"all optional", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, merge(merge(osRelV2, oemTest), tree{"/usr/share/flatcar/enabled-sysext.conf": "zfs\n"}))
			f := &fakeFetcher{fail: errors.New("server down"), essential: tc.essential}
			var logb strings.Builder
			p, err := Run(t.Context(), Options{FS: hostFS{dir: dir}, Cmdline: strings.NewReader(""), Fetcher: f, Log: oplog.New(oplog.WriterSink{W: &logb})})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("optional fetch failure failed the run: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("got %v, want %q", err, tc.wantErr)
			}
			if len(f.got) != 2 || len(p.Missing) != 2 {
				t.Fatalf("fetches %d, missing after %d", len(f.got), len(p.Missing))
			}
			for _, a := range p.Actions {
				if a.Op == OpSymlink {
					t.Fatalf("linked %+v after a failed fetch", a)
				}
			}
			if !strings.Contains(logb.String(), "optional extension image flatcar-zfs-"+v2+".raw not fetched") {
				t.Fatalf("no error line for the optional image:\n%s", logb.String())
			}
		})
	}
}

// TestFetchOSVersion: Fetch plans for --os-version and fetches without
// linking anything.
func TestFetchOSVersion(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, merge(merge(osRelV1, oemTest), tree{"/usr/share/flatcar/enabled-sysext.conf": "zfs\n"}))
	f := &fakeFetcher{}
	p, err := Fetch(t.Context(), Options{FS: hostFS{dir: dir}, Fetcher: f, OSVersion: v2})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.got) != 2 || f.got[0].Version != v2 || f.got[1].File != "flatcar-zfs-"+v2+".raw" || len(p.Missing) != 0 {
		t.Fatalf("fetches %+v, missing after %+v", f.got, p.Missing)
	}
	got := snapshot(t, dir)
	if _, ok := got["/etc/extensions/oem-test.raw"]; ok {
		t.Fatal("Fetch linked an image")
	}
}

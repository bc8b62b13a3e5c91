package systemd262

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestWindowProbe stats a file of the upper /etc and one from a confext in
// two tight loops while the merge is replaced by forced refreshes: 1,000 of
// ours (no stat may fail) and, for comparison only, 30 of systemd's (its
// unmerge-then-merge leaves a gap; logged, not asserted). Flatcar layout:
// /etc is the upper dir, so the upper file survives even systemd's gap and
// the confext file shows it. make bench reports the same probe
// (bench/confext) with more systemd replacements.
func TestWindowProbe(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)
	f := Fixture{Layout: LayoutSymlink, Images: StandardImages()}
	r := newRoot(t, e, f)
	paths := []string{filepath.Join(r.Host, "etc/upper.conf"), filepath.Join(r.Host, "etc/dir1.conf")}
	n := 1000
	if testing.Short() {
		n = 100
	}

	if res := ours(t, bin, r.OurEnv, "confext", "--root="+r.Host, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("our merge: %s", res)
	}
	before := uniqueID(t, r.Host)
	var lastErr string
	w := Probe("ext-setup-root", paths, n, func(i int) error {
		res, err := Ours(bin, r.OurEnv, "confext", "--root="+r.Host, "--mutable=yes", "--always-refresh=yes", "refresh")
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("%s", res)
		}
		if err != nil {
			lastErr = err.Error()
		}
		return err
	})
	t.Logf("%s", w)
	if w.CmdFailures != 0 {
		t.Errorf("%d of our refreshes failed, last: %s", w.CmdFailures, lastErr)
	}
	if uniqueID(t, r.Host) == before {
		t.Errorf("our forced refreshes did not replace the overlay (same unique mount id): the probe proves nothing")
	}
	if w.Failures() != 0 {
		t.Errorf("our atomic replacement left /etc files missing: %s", w)
	}
	if res := ours(t, bin, r.OurEnv, "confext", "--root="+r.Host, "unmerge"); res.ExitCode != 0 {
		t.Errorf("our unmerge: %s", res)
	}
	UnmountBelow(filepath.Join(r.Host, "etc"))

	// systemd, for comparison.
	if res := sd(t, e, "--root="+r.In, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("systemd merge: %s", res)
	}
	ws := Probe("systemd-confext", paths, 30, func(i int) error {
		res, err := e.Confext(nil, "--root="+r.In, "--mutable=yes", "--always-refresh=yes", "refresh")
		if err == nil && res.ExitCode != 0 {
			err = fmt.Errorf("%s", res)
		}
		return err
	})
	t.Logf("for comparison (not asserted) %s", ws)
	sd(t, e, "--root="+r.In, "unmerge")
}

package extension

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
)

// failAttachOnce makes the first move_mount onto dir fail with err; the
// later ones (putting the old merge back) go through.
func failAttachOnce(t *testing.T, dir string, err error) *atomic.Int32 {
	var hits atomic.Int32
	fault.Set(func(kind fault.Kind, detail string) error {
		_, to, ok := strings.Cut(detail, " -> fd ")
		if kind != fault.Mount || !strings.HasPrefix(detail, "move_mount ") || !ok {
			return nil
		}
		if p, _ := os.Readlink("/proc/self/fd/" + to); p == dir && hits.Add(1) == 1 {
			return err
		}
		return nil
	})
	t.Cleanup(func() { fault.Set(nil) })
	return &hits
}

// TestGapAttachFailurePutsOldBack (issue 14 item 7): on the gap path
// (--no-beneath, or a kernel without MOVE_MOUNT_BENEATH) the old merge is
// detached before the new one is attached; when that attach fails (an
// injected EBUSY-like failure of move_mount), /etc must show the old merge
// again, from the clone taken before. Before, /etc was left as the bare
// upper dir.
func TestGapAttachFailurePutsOldBack(t *testing.T) {
	ctx := context.Background()
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	o := opts(r, "yes")
	o.NoBeneath = true
	_, err := Merge(ctx, o)
	must(t, err)
	defer Unmerge(ctx, o)
	before := workDirsIn(t, r)
	dirImage(t, r, "dir2", "ID=testos\nVERSION_ID=1.0\n")
	injected := errors.New("injected attach failure")
	hits := failAttachOnce(t, filepath.Join(r, "etc"), injected)
	res, err := Refresh(ctx, o)
	if !errors.Is(err, injected) {
		t.Fatalf("refresh: %+v, %v; want the injected failure", res, err)
	}
	fault.Set(nil)
	if hits.Load() < 2 {
		t.Errorf("%d move_mount onto /etc, want the failed attach and the put-back", hits.Load())
	}
	if _, err := os.Stat(filepath.Join(r, "etc/dir1.conf")); err != nil {
		t.Fatalf("/etc does not show the old merge after the failed attach: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r, "etc/dir2.conf")); err == nil {
		t.Error("/etc shows the new merge, whose attach failed")
	}
	if _, ok := readMeta(t, r, "origin"); !ok {
		t.Error("the merge put back has no origin record")
	}
	checkDev(t, r)
	if n := overlaysAt(t, filepath.Join(r, "etc")); n != 1 {
		t.Errorf("%d overlays on /etc, want the old one", n)
	}
	if got := workDirsIn(t, r); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Errorf("work dirs %v, want the old merge's %v", got, before)
	}
	// The merge put back is ours: the next refresh replaces it.
	res, err = Refresh(ctx, o)
	must(t, err)
	if _, err := os.Stat(filepath.Join(r, "etc/dir2.conf")); err != nil || !res.Replaced {
		t.Errorf("next refresh: %+v, dir2.conf %v", res, err)
	}
	if n := overlaysAt(t, filepath.Join(r, "etc")); n != 1 {
		t.Errorf("%d overlays on /etc after the next refresh", n)
	}
}

// TestRefreshLaterHierarchyFailureRestores (issue 14 item 9): a sysext
// refresh over /usr and /opt whose /opt attach fails after /usr was
// replaced puts /usr's old merge back (its clone beneath the new merge,
// then the new one detached): all-or-nothing, like the merge. Before,
// /usr kept the new merge. Run with MOVE_MOUNT_BENEATH and without.
func TestRefreshLaterHierarchyFailureRestores(t *testing.T) {
	for _, noBeneath := range []bool{false, true} {
		name := "beneath"
		if noBeneath {
			name = "gap"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r := testRoot(t, "none")
			must(t, os.MkdirAll(filepath.Join(r, "usr/bin"), 0o755))
			sysextImage(t, r, "tools", true)
			o := sysextOpts(r, "no")
			o.NoBeneath = noBeneath
			_, err := Merge(ctx, o)
			must(t, err)
			defer Unmerge(ctx, o)
			sysextImage(t, r, "more", true)
			injected := errors.New("injected attach failure of /opt")
			failAttachOnce(t, filepath.Join(r, "opt"), injected)
			if _, err := Refresh(ctx, o); !errors.Is(err, injected) {
				t.Fatalf("refresh: %v, want the injected failure", err)
			}
			fault.Set(nil)
			for _, h := range []string{"usr/share", "opt"} {
				if _, err := os.Stat(filepath.Join(r, h, "tools")); err != nil {
					t.Errorf("/%s does not show the old merge: %v", h, err)
				}
				if _, err := os.Stat(filepath.Join(r, h, "more")); err == nil {
					t.Errorf("/%s shows the new merge after the failed refresh", h)
				}
			}
			for _, h := range []string{"usr", "opt"} {
				if n := overlaysAt(t, filepath.Join(r, h)); n != 1 {
					t.Errorf("%d overlays on /%s, want the old merge alone", n, h)
				}
			}
			// Both hierarchies carry the same (old) record, and the next
			// refresh replaces both.
			res, err := Refresh(ctx, o)
			must(t, err)
			if res.Unchanged || len(res.Merged) != 2 {
				t.Fatalf("next refresh: %+v", res)
			}
			for _, h := range []string{"usr/share", "opt"} {
				if _, err := os.Stat(filepath.Join(r, h, "more")); err != nil {
					t.Errorf("/%s after the next refresh: %v", h, err)
				}
			}
		})
	}
}

package extension

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// etcStoredSysext builds Flatcar's layout: a squashfs sysext stored in
// /etc/flatcar/sysext and linked from /etc/extensions, plus a directory
// confext, so that the sysext image is seen through the /etc overlay.
func etcStoredSysext(t *testing.T) string {
	r := testRoot(t, "symlink")
	must(t, os.MkdirAll(filepath.Join(r, "usr/lib"), 0o755))
	write(t, filepath.Join(r, "usr/lib/hostfile"), "host\n")
	src := filepath.Join(t.TempDir(), "zfs")
	write(t, filepath.Join(src, "usr/lib/extension-release.d/extension-release.flatcar-zfs"), "ID=_any\n")
	write(t, filepath.Join(src, "usr/share/zfs"), "zfs\n")
	img := filepath.Join(r, "etc/flatcar/sysext/flatcar-zfs-1.0.raw")
	must(t, os.MkdirAll(filepath.Dir(img), 0o755))
	testutil.MakeSquashfs(t, src, img)
	must(t, os.MkdirAll(filepath.Join(r, "etc/extensions"), 0o755))
	must(t, os.Symlink("/etc/flatcar/sysext/flatcar-zfs-1.0.raw", filepath.Join(r, "etc/extensions/flatcar-zfs.raw")))
	dirImage(t, r, "user", "ID=_any\n")
	return r
}

// TestRerecordAfterEtcReplaced: the sysext image's mount id changes when
// the confext merge over /etc is replaced; without a correction the next
// refresh redoes the merge, with Rerecord it skips, the merged tree is
// untouched, and the origin read through the overlay shows the new record.
func TestRerecordAfterEtcReplaced(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T, rec *Records) string {
		r := etcStoredSysext(t)
		_, err := Merge(ctx, opts(r, "auto"))
		must(t, err)
		so := sysextOpts(r, "")
		so.Records = rec
		res, err := Merge(ctx, so)
		must(t, err)
		if strings.Join(res.Merged, ",") != "flatcar-zfs" {
			t.Fatalf("merged %v", res.Merged)
		}
		co := opts(r, "auto")
		co.AlwaysRefresh = true
		_, err = Refresh(ctx, co) // /etc gets a new mount
		must(t, err)
		return r
	}

	t.Run("control: no correction, refresh remounts", func(t *testing.T) {
		r := setup(t, nil)
		res, err := Refresh(ctx, sysextOpts(r, ""))
		must(t, err)
		if res.Unchanged {
			t.Fatal("refresh skipped although /etc, holding the image, was replaced: the test does not exercise the problem")
		}
	})

	t.Run("corrected", func(t *testing.T) {
		rec := &Records{}
		defer rec.Close()
		r := setup(t, rec)
		before := mustRead(t, filepath.Join(r, "usr/.systemd-sysext/origin"))
		so := sysextOpts(r, "")
		so.Records = rec
		rr, err := Rerecord(ctx, so)
		must(t, err)
		if !rr.Rewritten || strings.Join(rr.Images, ",") != "flatcar-zfs" {
			t.Fatalf("rerecord = %+v", rr)
		}
		after := mustRead(t, filepath.Join(r, "usr/.systemd-sysext/origin"))
		if after == before {
			t.Fatal("origin read through the overlay did not change")
		}
		if got := mustRead(t, filepath.Join(r, "usr/share/zfs")); got != "zfs\n" {
			t.Fatalf("merged file = %q", got)
		}
		rr, err = Rerecord(ctx, so)
		must(t, err)
		if rr.Rewritten || rr.Reason != "the record already matches" {
			t.Fatalf("second rerecord = %+v", rr)
		}
		res, err := Refresh(ctx, sysextOpts(r, ""))
		must(t, err)
		if !res.Unchanged {
			t.Fatal("refresh after the correction did not skip")
		}
	})

	t.Run("new image: left for a real refresh", func(t *testing.T) {
		rec := &Records{}
		defer rec.Close()
		r := setup(t, rec)
		sysextImage(t, r, "late", false)
		before := mustRead(t, filepath.Join(r, "usr/.systemd-sysext/origin"))
		so := sysextOpts(r, "")
		so.Records = rec
		rr, err := Rerecord(ctx, so)
		must(t, err)
		if rr.Rewritten || !strings.Contains(rr.Reason, "late") {
			t.Fatalf("rerecord = %+v", rr)
		}
		if mustRead(t, filepath.Join(r, "usr/.systemd-sysext/origin")) != before {
			t.Fatal("origin changed")
		}
	})

	t.Run("merge not made by this process", func(t *testing.T) {
		r := setup(t, nil)
		so := sysextOpts(r, "")
		so.Records = &Records{}
		rr, err := Rerecord(ctx, so)
		must(t, err)
		if rr.Rewritten || !strings.Contains(rr.Reason, "not made by this process") {
			t.Fatalf("rerecord = %+v", rr)
		}
		so.Records = nil
		if _, err := Rerecord(ctx, so); err == nil {
			t.Fatal("no error without Records")
		}
	})
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return string(b)
}

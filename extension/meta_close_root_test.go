package extension

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
)

// TestMetaCloseErrorFailsMerge (issue 14 item 11): an error reported when
// a meta file (here origin) is closed fails the merge, like a write
// error, instead of leaving a meta file that looks whole. Before, the
// close error was dropped (a deferred f.Close()), so there was no step to
// fail and the merge went through.
func TestMetaCloseErrorFailsMerge(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	closes := 0
	fault.Set(func(kind fault.Kind, detail string) error {
		if kind == fault.Write && detail == "close meta origin" {
			closes++
			return unix.EIO
		}
		return nil
	})
	t.Cleanup(func() { fault.Set(nil) })
	ctx := context.Background()
	_, err := Merge(ctx, opts(r, "yes"))
	if err == nil {
		Unmerge(ctx, opts(r, "yes"))
	}
	if !errors.Is(err, unix.EIO) || closes == 0 {
		t.Fatalf("merge with a failing close of meta origin: %v (%d closes seen), want EIO", err, closes)
	}
	if n := overlaysAt(t, filepath.Join(r, "etc")); n != 0 {
		t.Fatalf("%d overlays on /etc after the failed merge", n)
	}
	if _, err := os.Stat(filepath.Join(r, "etc/dir1.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir1 merged: %v", err)
	}
}

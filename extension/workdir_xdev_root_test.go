package extension

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUpperOnOtherFilesystem: /etc as its own upper dir on a file system
// other than its parent's cannot get a work dir next to it (overlayfs
// wants upper and work on one file system). The call starts over a few
// times (a merge another tool attached and removed between inspection and
// the work dir check looks the same) and then fails with systemd's reason;
// nothing is merged and no work dir is left.
func TestUpperOnOtherFilesystem(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	etc := filepath.Join(r, "etc")
	must(t, unix.Mount("tmpfs", etc, "tmpfs", 0, "mode=0755"))
	t.Cleanup(func() { unix.Unmount(etc, unix.MNT_DETACH) })
	write(t, filepath.Join(etc, "os-release"), "ID=testos\nVERSION_ID=1.0\n")
	_, err := Merge(context.Background(), opts(r, "yes"))
	if err == nil || !errors.Is(err, unix.EXDEV) || !strings.Contains(err.Error(), "different filesystem") {
		t.Fatalf("merge: %v, want the work dir location error", err)
	}
	if n := len(etcMounts(t, r)); n != 1 {
		t.Errorf("%d mounts at etc, want only the tmpfs", n)
	}
	ents, _ := os.ReadDir(r)
	for _, e := range ents {
		if strings.Contains(e.Name(), "workdir") {
			t.Errorf("work dir left: %s", e.Name())
		}
	}
}

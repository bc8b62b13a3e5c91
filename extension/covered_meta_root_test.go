package extension

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// coverWithForeignMeta leaves the state a systemd-confext refresh racing
// another call can leave (state_hier.go, uncoveredMeta): a merge on
// r/etc with an earlier merge's read-only .systemd-confext bind over its
// own metadata.
func coverWithForeignMeta(t *testing.T, r string) {
	t.Helper()
	ctx := context.Background()
	meta := filepath.Join(r, "etc/.systemd-confext")
	_, err := Merge(ctx, opts(r, "yes"))
	must(t, err)
	fd, err := unix.OpenTree(unix.AT_FDCWD, meta, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	must(t, err)
	defer unix.Close(fd)
	_, err = Unmerge(ctx, opts(r, "yes"))
	must(t, err)
	_, err = Merge(ctx, opts(r, "yes"))
	must(t, err)
	must(t, unix.MoveMount(fd, "", unix.AT_FDCWD, meta, unix.MOVE_MOUNT_F_EMPTY_PATH))
	dev, _ := readMeta(t, r, "dev")
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(r, "etc"), &st))
	if dev == fmt.Sprintf("%d:%d\n", unix.Major(st.Dev), unix.Minor(st.Dev)) {
		t.Fatal("the covering bind did not change the dev file read through /etc")
	}
}

// TestCoveredMetaRoot: a merge whose metadata another merge's bind covers
// is still recognized; an unmerge removes it with that bind, a refresh
// replaces it (never "unchanged") with a merge whose dev file matches.
func TestCoveredMetaRoot(t *testing.T) {
	ctx := context.Background()
	t.Run("unmerge", func(t *testing.T) {
		r := testRoot(t, "symlink")
		dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
		coverWithForeignMeta(t, r)
		res, err := Unmerge(ctx, opts(r, "yes"))
		must(t, err)
		if !res.Unmerged {
			t.Fatal("unmerge did not find the covered merge")
		}
		if n := overlaysAt(t, filepath.Join(r, "etc")); n != 0 {
			t.Fatalf("%d overlays left", n)
		}
		if n := overlaysAt(t, filepath.Join(r, "etc/.systemd-confext")); n != 0 {
			t.Fatalf("the covering bind is left (%d)", n)
		}
	})
	t.Run("refresh", func(t *testing.T) {
		r := testRoot(t, "symlink")
		dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
		coverWithForeignMeta(t, r)
		defer Unmerge(ctx, opts(r, "yes"))
		res, err := Refresh(ctx, opts(r, "yes"))
		must(t, err)
		if res.Unchanged {
			t.Fatal("the refresh skipped over a covered merge")
		}
		if n := overlaysAt(t, filepath.Join(r, "etc")); n != 1 {
			t.Fatalf("%d overlays after the refresh, want 1", n)
		}
		checkDev(t, r)
		res, err = Refresh(ctx, opts(r, "yes"))
		must(t, err)
		if !res.Unchanged {
			t.Error("the refresh after the repair did not skip")
		}
	})
}

// TestCoveredMetaOwnFSLeftAlone: /etc being its own (non-overlay) file
// system, with a dev file naming it under another mount on its
// .systemd-confext, is not taken for a covered merge: unmerge leaves both
// mounts in place.
func TestCoveredMetaOwnFSLeftAlone(t *testing.T) {
	r := testRoot(t, "none")
	etc := filepath.Join(r, "etc")
	must(t, unix.Mount("tmpfs", etc, "tmpfs", 0, "mode=0755"))
	t.Cleanup(func() { unix.Unmount(etc, unix.MNT_DETACH) })
	var st unix.Stat_t
	must(t, unix.Stat(etc, &st))
	write(t, filepath.Join(etc, "os-release"), "ID=testos\nVERSION_ID=1.0\n")
	write(t, filepath.Join(etc, ".systemd-confext/dev"), fmt.Sprintf("%d:%d\n", unix.Major(st.Dev), unix.Minor(st.Dev)))
	must(t, unix.Mount("tmpfs", filepath.Join(etc, ".systemd-confext"), "tmpfs", 0, "mode=0755"))
	res, err := Unmerge(context.Background(), opts(r, "no"))
	must(t, err)
	if res.Unmerged {
		t.Fatal("unmerge took /etc for a merge")
	}
	if _, err := os.Stat(filepath.Join(etc, "os-release")); err != nil {
		t.Fatalf("/etc's own file system is gone: %v", err)
	}
	var st2 unix.Stat_t
	must(t, unix.Stat(etc, &st2))
	if st2.Dev != st.Dev {
		t.Fatal("/etc's own file system was detached")
	}
}

package systemd262

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// recognized reports whether dir is a confext merge by systemd's own rule
// (is_our_mount_point): its .systemd-confext/dev names dir's device.
func recognized(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ".systemd-confext", "dev"))
	if err != nil {
		return false
	}
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return false
	}
	return strings.TrimSpace(string(b)) == fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
}

// coverMeta builds the state a systemd-confext refresh leaves when another
// call replaces the merge inside its unmerge (between detaching the meta
// bind and moving the other sub-mounts aside): systemd's merge on /etc,
// with another merge's read-only .systemd-confext bind over its own.
func coverMeta(t *testing.T, e *Env, bin string, env []string, r Root) {
	t.Helper()
	etc := filepath.Join(r.Host, "etc")
	meta := filepath.Join(etc, ".systemd-confext")
	if res := ours(t, bin, env, "confext", "--root="+r.Host, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("merge: %s", res)
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, meta, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatalf("open_tree %s: %v", meta, err)
	}
	defer unix.Close(fd)
	if res := ours(t, bin, env, "confext", "--root="+r.Host, "unmerge"); res.ExitCode != 0 {
		t.Fatalf("unmerge: %s", res)
	}
	if res := sd(t, e, "--root="+r.In, "--mutable=yes", "merge"); res.ExitCode != 0 {
		t.Fatalf("systemd merge: %s", res)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, meta, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		t.Fatalf("move_mount onto %s: %v", meta, err)
	}
	if recognized(etc) {
		t.Fatalf("the covered merge is still recognized:\n%s", hierDiag(etc, ".systemd-confext"))
	}
	// systemd itself no longer sees a merge there: its unmerge leaves it.
	sd(t, e, "--root="+r.In, "unmerge")
	if n := overlaysOn(etc); n != 1 {
		t.Fatalf("after systemd's unmerge: %d overlays on /etc, want the covered merge still there", n)
	}
}

// TestCoveredMetaRepaired: a merge whose metadata another mount covers (left
// by systemd-confext racing another call, see TestConcurrentWithSystemd)
// is recognized by ours: a refresh replaces it with a merge systemd
// recognizes again (never "unchanged"), and an unmerge removes it with the
// covering mount.
func TestCoveredMetaRepaired(t *testing.T) {
	e := sdEnv(t)
	bin := testutil.BuildBinary(t)
	for _, verb := range []string{"refresh", "unmerge"} {
		t.Run(verb, func(t *testing.T) {
			f := Fixture{Layout: LayoutSymlink, Images: StandardImages()}
			r := newRoot(t, e, f)
			etc := filepath.Join(r.Host, "etc")
			env := append([]string{"EXT_SETUP_ROOT_LOG=stderr"}, r.OurEnv...)
			defer UnmountBelow(etc)
			coverMeta(t, e, bin, env, r)
			args := []string{"confext", "--root=" + r.Host, verb}
			if verb == "refresh" {
				args = []string{"confext", "--root=" + r.Host, "--mutable=yes", "refresh"}
			}
			res := ours(t, bin, env, args...)
			if res.ExitCode != 0 {
				t.Fatalf("%s: %s", verb, res)
			}
			if !strings.Contains(res.Output, "has another mount over its .systemd-confext") {
				t.Errorf("%s did not report the covered metadata", verb)
			}
			switch verb {
			case "refresh":
				if n := overlaysOn(etc); n != 1 || !recognized(etc) {
					t.Fatalf("after our refresh: %d overlays, recognized %t\n%s", n, recognized(etc), hierDiag(etc, ".systemd-confext"))
				}
				st := sd(t, e, "--root="+r.In, "status")
				if !strings.Contains(st.Stdout, "dir1") {
					t.Errorf("systemd's status does not list the repaired merge: %s", st)
				}
				// And now systemd's own refresh skips over it.
				if res := sd(t, e, "--root="+r.In, "--mutable=yes", "refresh"); !strings.Contains(res.Output, "Skipping extension refresh") {
					t.Errorf("systemd's refresh after the repair did not skip: %s", res)
				}
			case "unmerge":
				for _, m := range MountsAt(etc) {
					t.Errorf("left mounted after unmerge: %d %s %s", m.ID, m.MountPoint, m.FSType)
				}
			}
		})
	}
}

package prepare

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// Absolute symlinks inside /etc name paths of the root, not of /etc
// (issue 14 item 3): the dedup's opt-out flag, a whiteout's parent
// directory and the machine-id are resolved in the root.

func resolveRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	testutil.RequireRoot(t)
	root := testutil.Tmpfs(t)
	all := map[string]string{
		"usr/share/flatcar/etc/same.conf":    "vendor\n",
		"usr/share/flatcar/etc-no-whiteouts": "/etc/ssh/sshd_config\n",
	}
	for k, v := range files {
		all[k] = v
	}
	testutil.WriteTree(t, root, all)
	return root
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestOptOutFlagAbsoluteSymlink: /etc/.no-dup-update is a symlink to
// /etc/flatcar/no-dup-update, which exists: the admin opted out, so the
// identical copy stays.
func TestOptOutFlagAbsoluteSymlink(t *testing.T) {
	root := resolveRoot(t, map[string]string{
		"etc/same.conf":             "vendor\n",
		"etc/flatcar/no-dup-update": "",
		"etc/.no-dup-update":        "->/etc/flatcar/no-dup-update",
	})
	res, log := runOurs(t, root, diffConfig(), false)
	if !exists(filepath.Join(root, "etc/same.conf")) || res.Dedup != 0 {
		t.Fatalf("deduplicated despite the opt-out flag (%s)\n%s", res.Summary(), log)
	}
	// Control: without the flag's target, the copy goes.
	must(t, os.Remove(filepath.Join(root, "etc/flatcar/no-dup-update")))
	res, log = runOurs(t, root, diffConfig(), false)
	if exists(filepath.Join(root, "etc/same.conf")) {
		t.Fatalf("identical copy kept without the flag (%s)\n%s", res.Summary(), log)
	}
}

// TestWhiteoutParentAbsoluteSymlink: /etc/ssh is a symlink to
// /etc/ssh-real, where the listed whiteout is: it is repaired.
func TestWhiteoutParentAbsoluteSymlink(t *testing.T) {
	root := resolveRoot(t, map[string]string{
		"etc/ssh":       "->/etc/ssh-real",
		"etc/ssh-real/": "",
	})
	wo := filepath.Join(root, "etc/ssh-real/sshd_config")
	must(t, unix.Mknod(wo, unix.S_IFCHR|0o600, 0))
	res, log := runOurs(t, root, diffConfig(), false)
	if exists(wo) || res.Whiteouts != 1 {
		t.Fatalf("listed whiteout behind an absolute symlink kept (%s)\n%s", res.Summary(), log)
	}
}

// TestMachineIDAbsoluteSymlink: /etc/machine-id is a symlink to
// /etc/machine-id.d/id holding the blank placeholder: it is read and the
// machine-id removed.
func TestMachineIDAbsoluteSymlink(t *testing.T) {
	root := resolveRoot(t, map[string]string{
		"etc/machine-id.d/id": BlankMachineID + "\n",
		"etc/machine-id":      "->/etc/machine-id.d/id",
	})
	res, log := runOurs(t, root, diffConfig(), false)
	if exists(filepath.Join(root, "etc/machine-id")) || !res.MachineID {
		t.Fatalf("blank machine-id behind an absolute symlink kept (%s)\n%s", res.Summary(), log)
	}
}

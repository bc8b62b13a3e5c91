package fetch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// usrPartition builds an erofs /usr tree holding lib/os-release (body),
// attaches it to a read-only loop device and names it LABEL under a
// private dev dir (disk/by-partlabel/LABEL -> /dev/loopN, as udev does).
func usrPartition(t *testing.T, label string, build func(usr string)) string {
	t.Helper()
	work := testutil.Tmpfs(t)
	usr := filepath.Join(work, "usr")
	if err := os.MkdirAll(filepath.Join(usr, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	build(usr)
	img := filepath.Join(work, "usr.erofs")
	testutil.MakeErofs(t, usr, img)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := mount.AttachLoop(f, mount.LoopOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dev := filepath.Join(work, "dev")
	if err := os.MkdirAll(filepath.Join(dev, "disk/by-partlabel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(l.Path, filepath.Join(dev, "disk/by-partlabel", label)); err != nil {
		t.Fatal(err)
	}
	return dev
}

// TestVersionOfUsrPartition: --usr=PARTLABEL reads the version of the
// other slot from its /usr partition's lib/os-release, read-only and
// detached; a label that is a path, a missing label, a missing key and a
// FIFO as os-release are refused with errors naming them (the FIFO
// without blocking: the partition's content is input).
func TestVersionOfUsrPartition(t *testing.T) {
	testutil.RequireRoot(t)
	dev := usrPartition(t, "USR-B", func(usr string) {
		if err := os.WriteFile(filepath.Join(usr, "lib/os-release"), []byte("ID=flatcar\nVERSION=1001.0.0\nVERSION_ID=1001.0.0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if v, err := VersionOfUsrPartition(dev, "USR-B", "VERSION"); err != nil || v != "1001.0.0" {
		t.Fatalf("USR-B: %q, %v; want 1001.0.0", v, err)
	}
	if _, err := VersionOfUsrPartition(dev, "USR-B", "SYSEXT_LEVEL"); err == nil || !strings.Contains(err.Error(), "has no SYSEXT_LEVEL") {
		t.Errorf("missing key: %v", err)
	}
	for _, bad := range []string{"../USR-B", "", ".."} {
		if _, err := VersionOfUsrPartition(dev, bad, "VERSION"); err == nil || !strings.Contains(err.Error(), "not a partition label") {
			t.Errorf("label %q: %v", bad, err)
		}
	}
	if _, err := VersionOfUsrPartition(dev, "USR-C", "VERSION"); err == nil || !strings.Contains(err.Error(), "USR-C") {
		t.Errorf("missing label: %v", err)
	}
	fifo := usrPartition(t, "USR-F", func(usr string) {
		if err := syscallMkfifo(filepath.Join(usr, "lib/os-release")); err != nil {
			t.Fatal(err)
		}
	})
	done := make(chan error, 1)
	go func() { _, err := VersionOfUsrPartition(fifo, "USR-F", "VERSION"); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO os-release: %v", err)
		}
	case <-timeAfter(20):
		t.Fatalf("a FIFO as lib/os-release blocked the read")
	}
}

func syscallMkfifo(p string) error { return unix.Mkfifo(p, 0o644) }

func timeAfter(s int) <-chan time.Time { return time.After(time.Duration(s) * time.Second) }

package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/mount"
)

// BenchmarkWriteFileAtomic measures a small crash-safe write (temp, fsync,
// rename, fsync dir) on tmpfs, i.e. the syscall cost without disk latency.
func BenchmarkWriteFileAtomic(b *testing.B) {
	r, err := Open(testutil.Tmpfs(b))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	data := []byte("ID=flatcar\n")
	for i := 0; i < b.N; i++ {
		if err := r.WriteFileAtomic("/f", data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSymlinkAtomic measures replacing an active extension link.
func BenchmarkSymlinkAtomic(b *testing.B) {
	r, err := Open(testutil.Tmpfs(b))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for i := 0; i < b.N; i++ {
		if err := r.SymlinkAtomic(fmt.Sprintf("/oem/sysext/x-%d.raw", i%2), "/x.raw"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMoveCrossFS16MiB measures a cross-filesystem move of a 16 MiB
// image between two tmpfs (copy, fsyncs, renames, unlink).
func BenchmarkMoveCrossFS16MiB(b *testing.B) {
	root := testutil.Tmpfs(b)
	oem := filepath.Join(root, "oem")
	if err := os.Mkdir(oem, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := mount.Mount("tmpfs", oem, "tmpfs", 0, ""); err != nil {
		b.Fatal(err)
	}
	defer mount.Unmount(oem, unix.MNT_DETACH)
	r, err := Open(root)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	data := []byte(strings.Repeat("x", 16<<20))
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := os.WriteFile(filepath.Join(root, "src.raw"), data, 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := r.Move("/src.raw", "/oem/dst.raw"); err != nil {
			b.Fatal(err)
		}
	}
}

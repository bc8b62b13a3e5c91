package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// BenchmarkMountOverlay128 builds (and discards) a detached overlay of 128
// lower layers, by path and by fd.
func BenchmarkMountOverlay128(b *testing.B) {
	for _, byFd := range []bool{false, true} {
		b.Run(map[bool]string{false: "paths", true: "fds"}[byFd], func(b *testing.B) {
			base := testutil.Tmpfs(b)
			var lower []Layer
			for i := 0; i < 128; i++ {
				d := filepath.Join(base, fmt.Sprintf("l%03d", i))
				if err := os.Mkdir(d, 0o755); err != nil {
					b.Fatal(err)
				}
				if byFd {
					f, err := os.Open(d)
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					lower = append(lower, Layer{File: f})
				} else {
					lower = append(lower, Layer{Path: d})
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mnt, err := MountOverlay(OverlaySpec{Lower: lower})
				if err != nil {
					b.Fatal(err)
				}
				mnt.Close()
			}
		})
	}
}

// BenchmarkReplaceBeneath measures one atomic replacement of a mounted
// overlay: attach the new one beneath, detach the old one.
func BenchmarkReplaceBeneath(b *testing.B) {
	base := testutil.Tmpfs(b)
	var lower []Layer
	for i := 0; i < 2; i++ {
		d := filepath.Join(base, fmt.Sprint("l", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		lower = append(lower, Layer{Path: d})
	}
	target := filepath.Join(base, "etc")
	if err := os.Mkdir(target, 0o755); err != nil {
		b.Fatal(err)
	}
	first, err := MountOverlay(OverlaySpec{Lower: lower})
	if err != nil {
		b.Fatal(err)
	}
	t0, _ := os.OpenFile(target, unix.O_PATH, 0)
	if err := Attach(first, t0, false); err != nil {
		b.Fatal(err)
	}
	first.Close()
	t0.Close()
	defer Unmount(target, unix.MNT_DETACH)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		mnt, err := MountOverlay(OverlaySpec{Lower: lower})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		top, err := os.OpenFile(target, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := Attach(mnt, top, true); err != nil {
			b.Fatal(err)
		}
		if err := UnmountFd(top, unix.MNT_DETACH); err != nil {
			b.Fatal(err)
		}
		top.Close()
		mnt.Close()
	}
}

// BenchmarkAttachLoop measures attaching and releasing an autoclear loop
// device.
func BenchmarkAttachLoop(b *testing.B) {
	testutil.RequireRoot(b)
	img := filepath.Join(b.TempDir(), "img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l, err := AttachLoop(f, LoopOptions{ReadOnly: true, Autoclear: true})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}

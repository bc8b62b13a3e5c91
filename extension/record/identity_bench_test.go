package record

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil/roottest"
)

// BenchmarkDirFingerprint measures the extra refresh identity on a
// directory image of 1,000 files in 20 directories.
func BenchmarkDirFingerprint(b *testing.B) {
	dir := b.TempDir()
	for d := range 20 {
		sub := filepath.Join(dir, "var/lib/confexts/big/etc", fmt.Sprintf("d%02d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 50 {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d.conf", f)), []byte("x=1\n"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	root := roottest.Open(b, dir)
	imgs, err := discover.Discover(root, config.Confext, false)
	if err != nil || len(imgs) != 1 {
		b.Fatal(imgs, err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := DirFingerprint(root, imgs[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiscoverIdentity64 measures discovery plus the origin identity
// of 64 raw images, what deciding "unchanged" costs before any mount.
func BenchmarkDiscoverIdentity64(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "var/lib/confexts")
	if err := os.MkdirAll(p, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 64 {
		if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("img%02d.raw", i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	root := roottest.Open(b, dir)
	b.ResetTimer()
	for range b.N {
		imgs, err := discover.Discover(root, config.Confext, false)
		if err != nil || len(imgs) != 64 {
			b.Fatal(err)
		}
		for _, img := range imgs {
			if _, err := ImageIdentity(root, img, IdentityOptions{Getenv: func(string) string { return "" }}); err != nil {
				b.Fatal(err)
			}
		}
	}
}

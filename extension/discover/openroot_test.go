package discover

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// b1OpenRoot opens dir as a rootfs.Root closed at the end of the test.
func b1OpenRoot(t testing.TB, dir string) *rootfs.Root {
	t.Helper()
	r, err := rootfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

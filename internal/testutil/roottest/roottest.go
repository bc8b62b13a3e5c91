// Package roottest holds the test helpers that need package rootfs; they
// cannot live in testutil, which rootfs's own tests import.
package roottest

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// Open opens dir as a rootfs.Root closed at the end of the test; an error
// fails the test.
func Open(t testing.TB, dir string) *rootfs.Root {
	t.Helper()
	r, err := rootfs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

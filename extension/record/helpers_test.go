package record

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// setXattr sets the strict-release xattr on p, or gates the test when the
// file system has no user xattrs.
func setXattr(t *testing.T, p, v string) {
	t.Helper()
	if err := unix.Lsetxattr(p, discover.StrictXattr, []byte(v), 0); err != nil {
		testutil.Gate(t, "user xattrs on the test directory's file system: %v", err)
	}
}

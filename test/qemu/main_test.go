package qemu

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestMain runs the tests in a private mount namespace (as root): the image
// builder and the dracut chroot mount things that must not reach the host.
func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

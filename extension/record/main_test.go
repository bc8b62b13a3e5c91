package record

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestMain runs the package's tests in a private mount namespace when
// root, so that the root-tier tests never touch the host's mounts.
// (The only TestMain of package record.)
func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

package abslots

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestMain runs the package's tests in a private mount namespace when root,
// so the loop and bind mounts of root tests never leak to the host.
func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

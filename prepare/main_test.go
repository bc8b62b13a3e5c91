package prepare

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestMain runs the package's tests in a private mount namespace when
// root; a crash test's child (crashChildEnv) runs prepare and is killed.
func TestMain(m *testing.M) {
	crashChild()
	testutil.MainInMountNS(m)
}

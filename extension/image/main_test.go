package image

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

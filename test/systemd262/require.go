package systemd262

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// Require gates t on root, the chroot (ChrootDir, else $RootEnv must name
// one) and tools, and returns the Env of this process (Setup); a chroot
// that cannot be set up fails t. The tests of every package that runs
// systemd 262 start with it.
func Require(t testing.TB, tools ...string) *Env {
	t.Helper()
	testutil.RequireRoot(t)
	dir := ChrootDir()
	if dir == "" {
		dir = testutil.RequireEnvDir(t, RootEnv, "systemd 262 chroot (make systemd262-root)")
	}
	if len(tools) > 0 {
		testutil.RequireTool(t, tools...)
	}
	e, err := Setup(dir)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

package abslots

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestDifferentialBash runs Flatcar's bash script and ours on copies of the
// same fixture roots and requires the same links and image locations, on
// the first boot and on a rerun. Scenarios in which ours deliberately
// differs (download path, documented differences) are left out.
func TestDifferentialBash(t *testing.T) {
	testutil.RequireRoot(t)
	referenceScript(t)
	for _, sc := range scenarios() {
		if sc.bashDiffers {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			theirs, ours := testutil.Tmpfs(t), testutil.Tmpfs(t)
			writeTree(t, theirs, sc.in)
			writeTree(t, ours, sc.in)
			env := newBashEnv(t, theirs)
			root := openRootFS(t, ours)
			runBothTwice(t, env, theirs, root, ours)
			// Both must also match the expected state.
			if d := diffTrees(sc.want, snapshot(t, ours)); d != "" {
				t.Fatalf("state differs from expectation:\n%s", d)
			}
		})
	}
}

// runBothTwice runs the bash script on theirs and ours on root (whose
// directory is ours) twice, a first boot and a rerun, and requires the two
// trees to be equal after each run.
func runBothTwice(t *testing.T, env *bashEnv, theirs string, root FS, ours string) {
	t.Helper()
	for i := 1; i <= 2; i++ {
		out := env.run(t)
		_, log := runFixture(t, root)
		if d := diffTrees(snapshot(t, theirs), snapshot(t, ours)); d != "" {
			t.Fatalf("run %d: ours (got) differs from bash (want):\n%s\nbash:\n%s\nours:\n%s", i, d, out, log)
		}
	}
}

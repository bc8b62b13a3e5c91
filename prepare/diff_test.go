package prepare

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// setupRoot builds scenario sc in a fresh tmpfs with its /usr mounted
// (mountUsr) and returns the root.
func setupRoot(t testing.TB, sc scenario) string {
	t.Helper()
	root := testutil.Tmpfs(t)
	vendor := filepath.Join(t.TempDir(), "usr")
	os.MkdirAll(vendor, 0o755)
	writeEnts(t, vendor, sc.usr)
	writeEnts(t, root, sc.root)
	mountUsr(t, root, vendor)
	return root
}

// diffConfig is the default configuration less the tmpfiles and OEM
// duties, which the differential test stubs out on the script's side.
func diffConfig() Config {
	c := Default()
	c.Tmpfiles.Enabled = false
	c.OEM.Enabled = false
	return c
}

// deliberate are the entries where ours differs from the script on
// purpose (docs/prepare.md): the script removes a copy whose xattrs differ
// from its default; we keep it, since a reader of /etc would see them go.
var deliberate = map[string][]string{"dedup": {"/etc/xattr"}}

// TestDifferentialBash runs Flatcar's initrd-setup-root and ours on two
// copies of the same roots, twice (a boot and a rerun), and requires the
// same trees: types, modes, owners, contents, link targets, device
// numbers, xattrs and ACLs, hard links.
func TestDifferentialBash(t *testing.T) {
	testutil.RequireRoot(t)
	referenceScript(t)
	testutil.RequireTool(t, "setfacl")
	keep := `/etc(/ssh(/ssh_host_.*)?)?|/home(/core(/\.ssh(/.*)?)?)?|/var(/lib(/docker(/.*)?)?)?|/etc/name with space|/etc/name.newline|/opt/bin/hard`
	for _, sc := range []scenario{dedupScenario(), noDupScenario(), whiteoutScenario(), resetScenario(keep + "\n"),
		resetScenario(`/etc/ssh/.*` + "\n/etc\n/etc/ssh"), resetScenario(`/nothing`)} {
		t.Run(sc.name, func(t *testing.T) {
			theirs, ours := setupRoot(t, sc), setupRoot(t, sc)
			env := newBashEnv(t, theirs)
			before := snapshot(t, ours, "/usr")
			for i := 1; i <= 2; i++ {
				out := env.run(t)
				res, log := runOurs(t, ours, diffConfig(), false)
				want, got := snapshot(t, theirs, "/usr"), snapshot(t, ours, "/usr")
				for _, p := range deliberate[sc.name] {
					if _, ok := want[p]; ok {
						t.Fatalf("run %d: the script kept %s: the deliberate difference is not exercised", i, p)
					}
					if _, ok := got[p]; !ok {
						t.Fatalf("run %d: ours removed %s, which a reader of /etc sees differ from its default", i, p)
					}
					delete(got, p)
				}
				if d := diffSnap(want, got); d != "" {
					t.Fatalf("run %d: ours (got) differs from bash (want):\n%s\nbash:\n%s\nours:\n%s", i, d, out, log)
				}
				if len(res.Problems) > 0 {
					t.Fatalf("run %d: problems %q", i, res.Problems)
				}
				if i == 1 {
					t.Logf("%s: %s", sc.name, res.Summary())
					if diffSnap(before, snapshot(t, ours, "/usr")) == "" && sc.name != "no-dup-update" {
						t.Fatalf("nothing changed: the scenario tests nothing")
					}
				} else if res.Changed() {
					t.Fatalf("rerun changed something: %s", res)
				}
			}
		})
	}
}

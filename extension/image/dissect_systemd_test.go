package image

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// systemdDissect runs systemd-dissect 262 --json=short on img in the
// forky chroot (its own mount namespace, the chroot bound onto itself so
// systemd-dissect can make its mounts private).
func systemdDissect(t *testing.T, img string) map[string]any {
	t.Helper()
	root := sd262Root(t)
	if _, err := os.Stat(filepath.Join(root, "usr/bin/systemd-dissect")); err != nil {
		testutilGateDissect(t, "systemd-dissect (package systemd-container) in the forky chroot (scripts/prepare-systemd262.sh): %v", err)
	}
	work := t.TempDir()
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "x.raw"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `set -e
root="$1"; work="$2"
mount --make-rprivate /
mount --bind "$root" "$root"
for d in proc sys dev; do mount --rbind /$d "$root/$d"; done
mount -t tmpfs tmpfs "$root/run"
mkdir -p "$root/run/dissect-work"
mount --bind "$work" "$root/run/dissect-work"
exec chroot "$root" env -i PATH=/usr/sbin:/usr/bin systemd-dissect --json=short /run/dissect-work/x.raw`
	cmd := exec.Command("unshare", "--mount", "sh", "-c", script, "sh", root, work)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("systemd-dissect: %v\n%s", err, stderr.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("systemd-dissect JSON: %v\n%s", err, out)
	}
	return m
}

func testutilGateDissect(t *testing.T, f string, a ...any) {
	t.Helper()
	testutil.Gate(t, f, a...)
}

// TestDissectAgainstSystemdDissect: for DDIs built by systemd-repart,
// systemd-dissect 262 and Dissect agree on the architecture, which
// partitions exist with which designator, UUID, label, read-only and
// growfs flags, the data partition's file system, and the verity state
// ("signed" with a signature partition, "yes" for plain verity).
func TestDissectAgainstSystemdDissect(t *testing.T) {
	for _, s := range []ddiSpec{
		{Class: "confext", FS: "erofs", Signed: true},
		{Class: "confext", FS: "squashfs"},
		{Class: "sysext", FS: "erofs", Signed: true},
	} {
		t.Run(s.Class+"-"+s.FS, func(t *testing.T) {
			b := buildDDI(t, s)
			sd := systemdDissect(t, b.Path)
			d, err := dissectFile(t, b.Path, DissectOptions{Architecture: "x86-64", AllowUsr: s.Class == "sysext"})
			if err != nil {
				t.Fatal(err)
			}
			if sd["architecture"] != "x86-64" {
				t.Errorf("systemd's architecture %v", sd["architecture"])
			}
			mounts, _ := sd["mounts"].([]any)
			if len(mounts) != len(d.Partitions) {
				t.Fatalf("systemd sees %d partitions, we %d: %v", len(mounts), len(d.Partitions), sd["mounts"])
			}
			for _, mm := range mounts {
				m := mm.(map[string]any)
				des := m["designator"].(string)
				var p *Partition
				for i := range d.Partitions {
					if d.Partitions[i].Designator == des {
						p = &d.Partitions[i]
					}
				}
				if p == nil {
					t.Errorf("systemd's %s partition not found by us", des)
					continue
				}
				if m["partition_uuid"] != p.UUID || m["partition_label"] != p.Label || (m["rw"] == "ro") != p.ReadOnly || m["growfs"] != p.GrowFS {
					t.Errorf("%s: systemd %v, we %+v", des, m, *p)
				}
				if des == d.Data.Designator {
					if m["fstype"] != d.Data.FSType {
						t.Errorf("fstype: systemd %v, we %s", m["fstype"], d.Data.FSType)
					}
					want := "yes"
					if d.Verity != nil && d.Verity.Signature != nil {
						want = "signed"
					}
					if m["verity"] != want {
						t.Errorf("verity: systemd %v, we %s", m["verity"], want)
					}
				}
			}
		})
	}
}

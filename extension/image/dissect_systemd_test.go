package image

import (
	"encoding/json"
	"fmt"
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

// TestDissectSeveralRootsAgainstSystemdDissect: a DDI with four root
// partitions (systemd-repart, squashfs, labels root_1.9, root_1.10,
// root_1.10~rc1 and a root_9 flagged no-auto): systemd-dissect 262 and
// Dissect pick the same one (root_1.10: the newest version, a
// pre-release older than its release, no-auto partitions skipped).
func TestDissectSeveralRootsAgainstSystemdDissect(t *testing.T) {
	sd262Root(t)
	work := t.TempDir()
	tree := filepath.Join(work, "tree", "etc", "extension-release.d")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "extension-release.several"), []byte("ID=_any\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defs := filepath.Join(work, "defs")
	if err := os.MkdirAll(defs, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, p := range []struct{ label, flags string }{
		{"root_1.9", ""}, {"root_1.10", ""}, {"root_1.10~rc1", ""}, {"root_9", "Flags=0x8000000000000000\n"},
	} {
		c := "[Partition]\nType=root\nLabel=" + p.label + "\nFormat=squashfs\nCopyFiles=/\nMinimize=best\n" + p.flags
		if err := os.WriteFile(filepath.Join(defs, fmt.Sprintf("%02d-root.conf", 10+i)), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	chrootRun(t, work, []string{"SOURCE_DATE_EPOCH=1700000000", "SYSTEMD_LOG_LEVEL=warning"},
		"systemd-repart", "--definitions=/run/dissect-work/defs", "--copy-source=/run/dissect-work/tree",
		"--empty=create", "--size=auto", "--dry-run=no", "--seed=6c0e3f7a-1d2b-4c5e-8f90-a1b2c3d4e5f6",
		"/run/dissect-work/out.raw")
	img := filepath.Join(work, "out.raw")
	sd := systemdDissect(t, img)
	d, err := dissectFile(t, img, DissectOptions{Architecture: "x86-64"})
	if err != nil {
		t.Fatal(err)
	}
	var sdRoot map[string]any
	mounts, _ := sd["mounts"].([]any)
	for _, mm := range mounts {
		if m := mm.(map[string]any); m["designator"] == "root" {
			sdRoot = m
		}
	}
	if sdRoot == nil {
		t.Fatalf("systemd-dissect found no root partition: %v", sd["mounts"])
	}
	if sdRoot["partition_uuid"] != d.Data.UUID || sdRoot["partition_label"] != d.Data.Label {
		t.Errorf("systemd picked %v (%v), we %s (%s)", sdRoot["partition_label"], sdRoot["partition_uuid"], d.Data.Label, d.Data.UUID)
	}
	if d.Data.Label != "root_1.10" {
		t.Errorf("picked %q, want root_1.10", d.Data.Label)
	}
}

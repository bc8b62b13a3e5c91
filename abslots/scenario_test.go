package abslots

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

const (
	v1 = "3760.2.0"
	v2 = "3815.2.0"
)

var (
	osRelV1 = tree{"/usr/lib/os-release": "ID=flatcar\nVERSION=" + v1 + "\nVERSION_ID=" + v1 + "\nFLATCAR_BOARD=amd64-usr\n"}
	osRelV2 = tree{"/usr/lib/os-release": "ID=flatcar\nVERSION=" + v2 + "\nVERSION_ID=" + v2 + "\nFLATCAR_BOARD=amd64-usr\n"}
	oemTest = tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": ""}
)

type scenario struct {
	name string
	in   tree
	// want is the watched state after the run (see watched).
	want tree
	// full lists in-root dirs where moves fail with ENOSPC.
	full     []string
	problems int
	// bashDiffers marks scenarios where Flatcar's script intentionally
	// behaves differently (download path, documented differences) and that
	// the differential test therefore leaves out.
	bashDiffers bool
}

func scenarios() []scenario {
	base := merge(osRelV2, oemTest)
	return []scenario{
		{name: "1 current image on OEM partition",
			in: merge(base, tree{"/oem/sysext/oem-test-" + v2 + ".raw": "v2"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/oem/sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw":        "@/oem/sysext/oem-test-" + v2 + ".raw"}},
		{name: "2 image on root, previous on OEM",
			in: merge(base, tree{"/oem/sysext/oem-test-" + v1 + ".raw": "v1",
				"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw":                    "@/oem/sysext/oem-test-" + v1 + ".raw"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/oem/sysext/oem-test-" + v2 + ".raw":             "v2",
				"/etc/flatcar/oem-sysext/oem-test-" + v1 + ".raw": "v1",
				"/etc/extensions/oem-test.raw":                    "@/oem/sysext/oem-test-" + v2 + ".raw"}},
		{name: "3 OEM partition full", bashDiffers: true,
			in: merge(base, tree{"/oem/sysext/oem-test-" + v1 + ".raw": "v1",
				"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw":                    "@/oem/sysext/oem-test-" + v1 + ".raw"}),
			full: []string{"/oem/sysext"},
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/etc/flatcar/oem-sysext/oem-test-" + v1 + ".raw": "v1",
				"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw":                    "@/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw"}},
		{name: "A to B update: links flip, old image moves to root",
			in: merge(base, tree{
				"/oem/sysext/oem-test-" + v1 + ".raw":             "v1",
				"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw":                    "@/oem/sysext/oem-test-" + v1 + ".raw",
				"/usr/share/flatcar/enabled-sysext.conf":          "zfs\n",
				"/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw":  "zfs1",
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":  "zfs2",
				"/etc/extensions/flatcar-zfs.raw":                 "@/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/oem/sysext/oem-test-" + v2 + ".raw":             "v2",
				"/etc/flatcar/oem-sysext/oem-test-" + v1 + ".raw": "v1",
				"/etc/extensions/oem-test.raw":                    "@/oem/sysext/oem-test-" + v2 + ".raw",
				"/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw":  "zfs1",
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":  "zfs2",
				"/etc/extensions/flatcar-zfs.raw":                 "@/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw"}},
		{name: "B to A rollback: links flip back",
			in: merge(merge(osRelV1, oemTest), tree{
				"/oem/sysext/oem-test-" + v2 + ".raw":             "v2",
				"/etc/flatcar/oem-sysext/oem-test-" + v1 + ".raw": "v1",
				"/etc/extensions/oem-test.raw":                    "@/oem/sysext/oem-test-" + v2 + ".raw",
				"/usr/share/flatcar/enabled-sysext.conf":          "zfs\n",
				"/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw":  "zfs1",
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":  "zfs2",
				"/etc/extensions/flatcar-zfs.raw":                 "@/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/oem/sysext/oem-test-" + v1 + ".raw":             "v1",
				"/etc/flatcar/oem-sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw":                    "@/oem/sysext/oem-test-" + v1 + ".raw",
				"/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw":  "zfs1",
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":  "zfs2",
				"/etc/extensions/flatcar-zfs.raw":                 "@/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw"}},
		{name: "7b enabled lists (script-compatible subset)",
			in: merge(osRelV2, tree{
				"/etc/flatcar/enabled-sysext.conf":                      "# my list\nzfs # trailing comment\n-docker-ext\n  podman  \nzfs\nwasm tools\n",
				"/usr/share/flatcar/enabled-sysext.conf":                "docker-ext\n# python\n",
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":        "zfs",
				"/etc/flatcar/sysext/flatcar-podman-" + v2 + ".raw":     "podman",
				"/etc/flatcar/sysext/flatcar-docker-ext-" + v2 + ".raw": "docker",
				"/etc/flatcar/sysext/flatcar-wasm-" + v2 + ".raw":       "wasm",
				"/etc/flatcar/sysext/flatcar-tools-" + v2 + ".raw":      "tools",
				"/etc/extensions/flatcar-zfs.raw":                       "@/etc/flatcar/sysext/flatcar-zfs-" + v1 + ".raw",
				"/etc/extensions/mine.raw":                              "@/opt/mine.raw",
				"/etc/extensions/docker-flatcar.raw":                    "@/dev/null",
			}),
			want: tree{
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":        "zfs",
				"/etc/flatcar/sysext/flatcar-podman-" + v2 + ".raw":     "podman",
				"/etc/flatcar/sysext/flatcar-docker-ext-" + v2 + ".raw": "docker",
				"/etc/flatcar/sysext/flatcar-wasm-" + v2 + ".raw":       "wasm",
				"/etc/flatcar/sysext/flatcar-tools-" + v2 + ".raw":      "tools",
				"/etc/extensions/flatcar-zfs.raw":                       "@/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw",
				"/etc/extensions/flatcar-podman.raw":                    "@/etc/flatcar/sysext/flatcar-podman-" + v2 + ".raw",
				"/etc/extensions/flatcar-wasm.raw":                      "@/etc/flatcar/sysext/flatcar-wasm-" + v2 + ".raw",
				"/etc/extensions/flatcar-tools.raw":                     "@/etc/flatcar/sysext/flatcar-tools-" + v2 + ".raw",
				"/etc/extensions/mine.raw":                              "@/opt/mine.raw",
				"/etc/extensions/docker-flatcar.raw":                    "@/dev/null",
			}},
		{name: "5a no active flag: OEM link untouched",
			in: merge(osRelV2, tree{"/oem/oem-release": "ID=test\n", "/oem/sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw": "@/oem/sysext/oem-test-" + v1 + ".raw"}),
			want: tree{"/oem/oem-release": "ID=test\n", "/oem/sysext/oem-test-" + v2 + ".raw": "v2",
				"/etc/extensions/oem-test.raw": "@/oem/sysext/oem-test-" + v1 + ".raw"}},
		{name: "5b no oem-release: untouched",
			in:   merge(osRelV2, tree{"/oem/sysext/active-oem-test": "", "/oem/sysext/oem-test-" + v2 + ".raw": "v2"}),
			want: tree{"/oem/sysext/active-oem-test": "", "/oem/sysext/oem-test-" + v2 + ".raw": "v2"}},
		{name: "6 migration",
			in: merge(base, tree{"/oem/sysext/oem-test-" + v2 + ".raw": "v2", "/oem/sysext/migrate-oem-test": "",
				"/usr/share/flatcar/oems/test":                                      "/oem/bin/old-agent\n\n/etc/systemd/system/multi-user.target.wants/oem-cloudinit.service\n/etc/systemd/system/old.service\n/oem/does-not-exist\n",
				"/oem/bin/old-agent":                                                "agent",
				"/etc/systemd/system/old.service":                                   "unit",
				"/etc/systemd/system/multi-user.target.wants/oem-cloudinit.service": "@/oem/units/oem-cloudinit.service"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/oem/sysext/oem-test-" + v2 + ".raw":                               "v2",
				"/etc/extensions/oem-test.raw":                                      "@/oem/sysext/oem-test-" + v2 + ".raw",
				"/etc/systemd/system/multi-user.target.wants/oem-cloudinit.service": "@/usr/lib/systemd/system/oem-cloudinit.service"}},
		{name: "7 enabled lists", bashDiffers: true,
			in: merge(osRelV2, tree{
				"/etc/flatcar/enabled-sysext.conf":                       "# my list\nzfs # trailing comment\n-docker-ext\n  podman  \nzfs\nwasm tools\n",
				"/usr/share/flatcar/enabled-sysext.conf":                 "docker-ext\npython # no image\n-notanoptout\nnotanoptout\n",
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":         "zfs",
				"/etc/flatcar/sysext/flatcar-podman-" + v2 + ".raw":      "podman",
				"/etc/flatcar/sysext/flatcar-docker-ext-" + v2 + ".raw":  "docker",
				"/etc/flatcar/sysext/flatcar-wasm-" + v2 + ".raw":        "wasm",
				"/etc/flatcar/sysext/flatcar-tools-" + v1 + ".raw":       "tools-old",
				"/etc/flatcar/sysext/flatcar-notanoptout-" + v2 + ".raw": "n",
				"/etc/extensions/flatcar-old.raw":                        "@/etc/flatcar/sysext/flatcar-old-" + v1 + ".raw",
				"/etc/extensions/flatcar-docker-ext.raw":                 "@/etc/flatcar/sysext/flatcar-docker-ext-" + v1 + ".raw",
				"/etc/extensions/flatcar-tools.raw":                      "@/etc/flatcar/sysext/flatcar-tools-" + v1 + ".raw",
				"/etc/extensions/mine.raw":                               "@/opt/mine.raw",
				"/etc/extensions/docker-flatcar.raw":                     "@/dev/null",
			}),
			want: tree{
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw":         "zfs",
				"/etc/flatcar/sysext/flatcar-podman-" + v2 + ".raw":      "podman",
				"/etc/flatcar/sysext/flatcar-docker-ext-" + v2 + ".raw":  "docker",
				"/etc/flatcar/sysext/flatcar-wasm-" + v2 + ".raw":        "wasm",
				"/etc/flatcar/sysext/flatcar-tools-" + v1 + ".raw":       "tools-old",
				"/etc/flatcar/sysext/flatcar-notanoptout-" + v2 + ".raw": "n",
				"/etc/extensions/flatcar-zfs.raw":                        "@/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw",
				"/etc/extensions/flatcar-podman.raw":                     "@/etc/flatcar/sysext/flatcar-podman-" + v2 + ".raw",
				"/etc/extensions/flatcar-wasm.raw":                       "@/etc/flatcar/sysext/flatcar-wasm-" + v2 + ".raw",
				"/etc/extensions/flatcar-notanoptout.raw":                "@/etc/flatcar/sysext/flatcar-notanoptout-" + v2 + ".raw",
				"/etc/extensions/mine.raw":                               "@/opt/mine.raw",
				"/etc/extensions/docker-flatcar.raw":                     "@/dev/null",
			}},
		{name: "dev-null opt-out of an enabled extension", bashDiffers: true,
			in: merge(osRelV2, tree{
				"/usr/share/flatcar/enabled-sysext.conf":         "zfs\n",
				"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw": "zfs",
				"/etc/extensions/flatcar-zfs.raw":                "@/dev/null"}),
			want: tree{"/etc/flatcar/sysext/flatcar-zfs-" + v2 + ".raw": "zfs", "/etc/extensions/flatcar-zfs.raw": "@/dev/null"}},
		{name: "initial image without flag", bashDiffers: true,
			in: merge(osRelV2, tree{"/oem/oem-release": "ID=test\n", "/oem/sysext/oem-test-initial.raw": "init"}),
			want: tree{"/oem/oem-release": "ID=test\n", "/oem/sysext/oem-test-initial.raw": "init",
				"/etc/extensions/oem-test.raw": "@/oem/sysext/oem-test-initial.raw"}},
		{name: "initial image with flag but no versioned image", bashDiffers: true,
			in: merge(base, tree{"/oem/sysext/oem-test-initial.raw": "init", "/oem/sysext/oem-test-" + v1 + ".raw": "v1"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/oem/sysext/oem-test-initial.raw": "init", "/oem/sysext/oem-test-" + v1 + ".raw": "v1",
				"/etc/extensions/oem-test.raw": "@/oem/sysext/oem-test-initial.raw"}},
		{name: "no image at all: stale link removed, boot goes on", bashDiffers: true,
			in:   merge(base, tree{"/etc/extensions/oem-test.raw": "@/oem/sysext/oem-test-" + v1 + ".raw"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": ""}},
		{name: "user-disabled OEM link", bashDiffers: true,
			in: merge(base, tree{"/oem/sysext/oem-test-" + v2 + ".raw": "v2", "/etc/extensions/oem-test.raw": "@/dev/null"}),
			want: tree{"/oem/oem-release": "ID=test\nNAME=Test\n", "/oem/sysext/active-oem-test": "",
				"/oem/sysext/oem-test-" + v2 + ".raw": "v2", "/etc/extensions/oem-test.raw": "@/dev/null"}},
		{name: "bad OEM ID",
			in:   merge(osRelV2, tree{"/oem/oem-release": "ID=../evil\n", "/oem/sysext/active-oem-test": ""}),
			want: tree{"/oem/oem-release": "ID=../evil\n", "/oem/sysext/active-oem-test": ""}, problems: 1},
		{name: "bad extension names", bashDiffers: true,
			in: merge(osRelV2, tree{"/etc/flatcar/enabled-sysext.conf": "../../etc/passwd\na/b\nok\n",
				"/etc/flatcar/sysext/flatcar-ok-" + v2 + ".raw": "ok"}),
			want: tree{"/etc/flatcar/sysext/flatcar-ok-" + v2 + ".raw": "ok",
				"/etc/extensions/flatcar-ok.raw": "@/etc/flatcar/sysext/flatcar-ok-" + v2 + ".raw"}, problems: 2},
	}
}

func runFixture(t *testing.T, root FS) (*Plan, string) {
	t.Helper()
	var buf bytes.Buffer
	p, err := Run(context.Background(), Options{FS: root, Cmdline: strings.NewReader("quiet"), Log: oplog.New(oplog.WriterSink{W: &buf})})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, buf.String())
	}
	return p, buf.String()
}

func TestScenarios(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, sc.in)
			full := map[string]bool{}
			for _, d := range sc.full {
				full[d] = true
			}
			root := hostFS{dir: dir, noRoom: full}
			p, log := runFixture(t, root)
			if d := diffTrees(sc.want, snapshot(t, dir)); d != "" {
				t.Fatalf("first boot: state differs:\n%s\nplan:\n%s\nlog:\n%s", d, p, log)
			}
			if len(p.Problems) != sc.problems {
				t.Errorf("problems = %q, want %d", p.Problems, sc.problems)
			}
			// Scenario 12: a rerun changes nothing and says so.
			p2, log2 := runFixture(t, root)
			if d := diffTrees(sc.want, snapshot(t, dir)); d != "" {
				t.Fatalf("rerun: state differs:\n%s\n%s", d, log2)
			}
			for _, a := range p2.Actions {
				// With a full preferred store Flatcar retries the
				// move on every boot; that attempt changes nothing.
				if len(sc.full) > 0 && (a.Op == OpPlace || a.Op == OpSymlink) {
					continue
				}
				if a.Op != OpSymlink || len(a.Targets) == 1 {
					t.Errorf("rerun planned %s", a.describe())
				}
			}
			if len(sc.full) == 0 && p2.Changed != 0 {
				t.Errorf("rerun reports %d changes", p2.Changed)
			}
			if len(sc.full) == 0 && strings.Contains(log2, "[started]") {
				t.Errorf("rerun changed something:\n%s", log2)
			}
		})
	}
}

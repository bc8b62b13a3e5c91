package boot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
	"github.com/ext-setup-root/ext-setup-root/prepare"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

const fixtureVersion = "4000.0.0"

// squashfs builds a squashfs image at root/rel from files.
func squashfs(t *testing.T, root, rel string, files map[string]string) {
	t.Helper()
	src := t.TempDir()
	testutil.WriteTree(t, src, files)
	out := filepath.Join(root, rel)
	os.MkdirAll(filepath.Dir(out), 0o755)
	testutil.MakeSquashfs(t, src, out)
}

// flatcarRoot builds a Flatcar-like root on tmpfs: a default confext in
// /usr/lib/confexts (ID=_any), a user confext, an OEM sysext on the OEM
// "partition" with its active flag, a versioned Flatcar extension enabled
// in /usr/share/flatcar/enabled-sysext.conf, and a user file in /etc.
func flatcarRoot(t *testing.T) string {
	t.Helper()
	root := testutil.Tmpfs(t)
	flatcarFixture(t, root)
	return root
}

// flatcarFixture writes the flatcarRoot tree into root.
func flatcarFixture(t *testing.T, root string) {
	t.Helper()
	testutil.WriteTree(t, root, map[string]string{
		"usr/lib/os-release":                    "ID=flatcar\nVERSION=" + fixtureVersion + "\nVERSION_ID=" + fixtureVersion + "\n",
		"etc/os-release":                        "->../usr/lib/os-release",
		"etc/hostname":                          "user-host\n",
		"opt/.keep":                             "",
		"oem/oem-release":                       "ID=qemu\n",
		"oem/sysext/active-oem-qemu":            "",
		"usr/share/flatcar/enabled-sysext.conf": "# built-in list\nzfs\n",
		"var/lib/.keep":                         "",
	})
	squashfs(t, root, "usr/lib/confexts/00-flatcar-default.raw", map[string]string{
		"etc/extension-release.d/extension-release.00-flatcar-default": "ID=_any\n",
		"etc/flatcar-default.conf":                                     "vendor default\n",
	})
	squashfs(t, root, "var/lib/confexts/50-user.raw", map[string]string{
		"etc/extension-release.d/extension-release.50-user": "ID=flatcar\nVERSION_ID=" + fixtureVersion + "\n",
		"etc/user.conf": "user confext\n",
	})
	sysext := func(rel, name string) {
		squashfs(t, root, rel, map[string]string{
			"usr/lib/extension-release.d/extension-release." + name: "ID=flatcar\nVERSION_ID=" + fixtureVersion + "\n",
			"usr/share/" + name + "/marker":                         name + "\n",
		})
	}
	sysext("oem/sysext/oem-qemu-"+fixtureVersion+".raw", "oem-qemu")
	sysext("etc/flatcar/sysext/flatcar-zfs-"+fixtureVersion+".raw", "flatcar-zfs")
}

// runStage runs one stage with the real engines, logging into a buffer.
func runStage(t *testing.T, root string, st Stage) (*Summary, string) {
	t.Helper()
	s, log, err := runRealStage(t, Options{Stage: st, Root: root})
	if err != nil {
		t.Fatalf("stage %s: %v\n%s", st, err, log)
	}
	t.Logf("stage %s log:\n%s", st, log)
	return s, log
}

// runRealStage runs the stage o describes with the real engines and
// RootDir, logging into a buffer it returns; o.Prep, if set, gets the
// same log.
func runRealStage(t *testing.T, o Options) (*Summary, string, error) {
	t.Helper()
	var buf bytes.Buffer
	log := oplog.New(oplog.WriterSink{W: &buf})
	getenv := func(string) string { return "" }
	ext, sel, err := RealEngines(getenv, "", log)
	if err != nil {
		t.Fatal(err)
	}
	o.Ext, o.Sel, o.RootOps, o.Log = ext, sel, RootDir{}, log
	if p, ok := o.Prep.(RealPreparer); ok {
		p.Log, p.Getenv = log, getenv
		o.Prep = p
	}
	s, err := Run(context.Background(), o)
	return s, buf.String(), err
}

// runPreDedup runs the pre stage with the real preparer (the dedup
// against the vendor default confext 00-vendor-default; tmpfiles and OEM
// off); the stage's error is in the summary, not fatal (a refused
// essential image fails it).
func runPreDedup(t *testing.T, root string, cl Cmdline) (*Summary, string) {
	t.Helper()
	cfg := prepare.Default()
	cfg.Tmpfiles.Enabled, cfg.OEM.Enabled = false, false
	cfg.Dedup.DefaultsConfext, cfg.Dedup.DefaultsDirs = "00-vendor-default", nil
	s, log, _ := runRealStage(t, Options{Stage: StagePre, Root: root, Cmdline: cl, Prep: RealPreparer{Config: cfg}})
	return s, log
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func isOverlay(t *testing.T, p string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 8 && f[4] == p {
			for i, x := range f {
				if x == "-" && i+1 < len(f) {
					return f[i+1] == "overlay"
				}
			}
		}
	}
	return false
}

// realEngineEnv points the host paths the engines use at temp dirs and
// gates on what the root test needs.
func realEngineEnv(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	oldState, oldCl := paths.StateDir, paths.ProcCmdline
	paths.StateDir = filepath.Join(t.TempDir(), "state")
	paths.ProcCmdline = filepath.Join(t.TempDir(), "cmdline") // absent: no switches
	t.Cleanup(func() { paths.StateDir, paths.ProcCmdline = oldState, oldCl })
}

var summaryRE = regexp.MustCompile(`(?m)^ext-setup-root: stage (pre|post) finished in [0-9]+ms \(.*\)$`)

func TestBootFlatcarLikeRoot(t *testing.T) {
	realEngineEnv(t)
	root := flatcarRoot(t)
	etc := filepath.Join(root, "etc")

	s, log := runStage(t, root, StagePre)
	if !summaryRE.MatchString(log) {
		t.Errorf("no pre summary line:\n%s", log)
	}
	if s.Confext == nil || strings.Join(s.Confext.Merged, ",") != "00-flatcar-default,50-user" {
		t.Fatalf("pre merged %+v\n%s", s.Confext, log)
	}
	if tgt, _ := os.Readlink(filepath.Join(root, "var/lib/extensions.mutable/etc")); tgt != "/etc" {
		t.Errorf("mutable link -> %q", tgt)
	}
	if !isOverlay(t, etc) {
		t.Fatalf("%s is not an overlay after pre:\n%s", etc, log)
	}
	if got := readFile(t, filepath.Join(etc, "flatcar-default.conf")); got != "vendor default\n" {
		t.Errorf("default confext file: %q", got)
	}
	if got := readFile(t, filepath.Join(etc, "hostname")); got != "user-host\n" {
		t.Errorf("user file hidden: %q", got)
	}
	// /etc is writable (provisioning writes here) and the write lands in
	// the upper dir, i.e. /etc of the root itself.
	testutil.WriteTree(t, etc, map[string]string{"ignition-wrote": "x\n"})

	// Provisioning places another confext between the stages.
	squashfs(t, root, "var/lib/confexts/60-ignition.raw", map[string]string{
		"etc/extension-release.d/extension-release.60-ignition": "ID=_any\n",
		"etc/ignition.conf": "from provisioning\n",
	})
	s, log = runStage(t, root, StagePost)
	if !summaryRE.MatchString(log) {
		t.Errorf("no post summary line:\n%s", log)
	}
	for link, tgt := range map[string]string{
		"etc/extensions/oem-qemu.raw":    "/oem/sysext/oem-qemu-" + fixtureVersion + ".raw",
		"etc/extensions/flatcar-zfs.raw": "/etc/flatcar/sysext/flatcar-zfs-" + fixtureVersion + ".raw",
	} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != tgt {
			t.Errorf("%s -> %q (%v), want %s\n%s", link, got, err, tgt, log)
		}
	}
	if got := readFile(t, filepath.Join(etc, "ignition.conf")); got != "from provisioning\n" {
		t.Errorf("refresh did not pick up the new confext: %q", got)
	}
	if got := readFile(t, filepath.Join(etc, "ignition-wrote")); got != "x\n" {
		t.Errorf("write to /etc lost by the refresh: %q", got)
	}
	if s.Sysext == nil || strings.Join(s.Sysext.Merged, ",") != "flatcar-zfs,oem-qemu" {
		t.Fatalf("sysext merged %+v\n%s", s.Sysext, log)
	}
	for _, n := range []string{"oem-qemu", "flatcar-zfs"} {
		if got := readFile(t, filepath.Join(root, "usr/share", n, "marker")); got != n+"\n" {
			t.Errorf("sysext %s not visible: %q", n, got)
		}
	}

	// The confext record now matches what the booted system will see:
	// a refresh (the pre stage rerun, or the host's late refresh) skips.
	s, log = runStage(t, root, StagePre)
	if s.Link != "present" || s.Confext == nil || !s.Confext.Unchanged {
		t.Errorf("pre rerun did not skip: %s\n%s", s, log)
	}
	// A post rerun converges in content: no link changes, the confext
	// refresh skips. (The sysext record of images reached through /etc may
	// churn, see docs/boot.md "Refresh skips and mount identities".)
	s, log = runStage(t, root, StagePost)
	if s.Links == nil || s.Links.Changes != 0 || s.Confext == nil || !s.Confext.Unchanged ||
		s.Sysext == nil || strings.Join(s.Sysext.Merged, ",") != "flatcar-zfs,oem-qemu" {
		t.Errorf("post rerun: %s\n%s", s, log)
	}
	s, log = runStage(t, root, StagePre)
	if !s.Confext.Unchanged {
		t.Errorf("pre after post rerun did not skip: %s\n%s", s, log)
	}

	// The host drop-in's path for systemd < 260: our refresh of the merge
	// the initrd left behind skips, /etc stays mounted.
	var buf bytes.Buffer
	llog := oplog.New(oplog.WriterSink{W: &buf})
	ext, _, _ := RealEngines(func(string) string { return "" }, "", llog)
	err := RunLate(context.Background(), LateOptions{Stage: StageLateConfext, Root: root, Ext: ext, Log: llog,
		SystemdVersion: func(string) (int, error) { return 258, nil },
		ExecStock:      func([]string) error { t.Error("exec of the stock tool on systemd 258"); return nil }})
	if err != nil || !strings.Contains(buf.String(), "stage late-confext finished in ") || !strings.Contains(buf.String(), "unchanged") {
		t.Errorf("late-confext on 258: %v\n%s", err, buf.String())
	}
	if got := readFile(t, filepath.Join(etc, "ignition-wrote")); got != "x\n" {
		t.Errorf("write to /etc lost by the rerun: %q", got)
	}
}

func TestBootMaskedSysextAndEssential(t *testing.T) {
	realEngineEnv(t)
	root := flatcarRoot(t)
	testutil.WriteTree(t, root, map[string]string{"etc/systemd/system/systemd-sysext.service": "->/dev/null"})
	runStage(t, root, StagePre)
	s, log := runStage(t, root, StagePost)
	if s.SysextNote != "masked" || s.Sysext != nil {
		t.Errorf("masked sysext merged: %s\n%s", s, log)
	}
	if isOverlay(t, filepath.Join(root, "usr")) {
		t.Errorf("/usr merged although masked")
	}

	// A broken default confext (wrong ID) fails the pre stage and leaves the
	// existing /etc merge mounted.
	root2 := flatcarRoot(t)
	os.Remove(filepath.Join(root2, "usr/lib/confexts/00-flatcar-default.raw"))
	squashfs(t, root2, "usr/lib/confexts/00-flatcar-default.raw", map[string]string{
		"etc/extension-release.d/extension-release.00-flatcar-default": "ID=otheros\n",
		"etc/flatcar-default.conf":                                     "wrong\n",
	})
	var buf bytes.Buffer
	log2 := oplog.New(oplog.WriterSink{W: &buf})
	ext, sel, _ := RealEngines(func(string) string { return "" }, "", log2)
	_, err := Run(context.Background(), Options{Stage: StagePre, Root: root2, Ext: ext, Sel: sel, RootOps: RootDir{}, Log: log2})
	if err == nil {
		t.Fatalf("broken essential default confext did not fail the stage:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "stage pre failed in ") || !strings.Contains(buf.String(), "00-flatcar-default") {
		t.Errorf("log:\n%s", buf.String())
	}
}

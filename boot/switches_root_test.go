package boot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// runWithCmdline runs one stage with the real engines and the switches of
// kernelCmdline, returning the summary, the log and the stage's error.
func runWithCmdline(t *testing.T, root string, st Stage, kernelCmdline string) (*Summary, string, error) {
	t.Helper()
	cl, err := ParseCmdline(strings.NewReader(kernelCmdline))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := oplog.New(oplog.WriterSink{W: &buf})
	ext, sel, err := RealEngines(func(string) string { return "" }, kernelCmdline, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Run(context.Background(), Options{Stage: st, Root: root, Ext: ext, Sel: sel, RootOps: RootDir{},
		Log: log, Cmdline: cl, DryRun: cl.DryRun})
	return s, buf.String(), err
}

// TestStagePreOffKeepsEtcWritable (issue 18 item 1): with
// ext-setup-root.stage.pre=0 the post stage merges the confexts itself; it
// must first make the mutable link the pre stage would have made, or the
// merge (mode auto, no mutable dir) mounts /etc read-only for the boot.
func TestStagePreOffKeepsEtcWritable(t *testing.T) {
	realEngineEnv(t)
	root := flatcarRoot(t)
	const cl = "ext-setup-root.stage.pre=0"
	if s, log, err := runWithCmdline(t, root, StagePre, cl); err != nil || s.Disabled == "" {
		t.Fatalf("pre: %v %s\n%s", err, s, log)
	}
	s, log, err := runWithCmdline(t, root, StagePost, cl)
	if err != nil {
		t.Fatalf("post: %v\n%s", err, log)
	}
	etc := filepath.Join(root, "etc")
	if !isOverlay(t, etc) || s.Confext == nil || len(s.Confext.Merged) != 2 {
		t.Fatalf("post did not merge /etc: %s\n%s", s, log)
	}
	if err := os.WriteFile(filepath.Join(etc, "written-after-post"), []byte("x\n"), 0o644); err != nil {
		t.Errorf("/etc not writable after stage.pre=0: %v\n%s", err, log)
	}
	if tgt, _ := os.Readlink(filepath.Join(root, "var/lib/extensions.mutable/etc")); tgt != "/etc" {
		t.Errorf("mutable link -> %q\n%s", tgt, log)
	}
}

// TestStagePreOffPastBrokenDefault (issue 18 item 1): stage.pre=0 is
// documented as a way past a broken default confext; the post stage then
// leaves the broken image out (logged) instead of failing on the
// essential check that belongs to the skipped stage.
func TestStagePreOffPastBrokenDefault(t *testing.T) {
	realEngineEnv(t)
	root := flatcarRoot(t)
	os.Remove(filepath.Join(root, "usr/lib/confexts/00-flatcar-default.raw"))
	squashfs(t, root, "usr/lib/confexts/00-flatcar-default.raw", map[string]string{
		"etc/extension-release.d/extension-release.00-flatcar-default": "ID=otheros\n",
		"etc/flatcar-default.conf":                                     "wrong\n",
	})
	const cl = "ext-setup-root.stage.pre=0"
	s, log, err := runWithCmdline(t, root, StagePost, cl)
	if err != nil {
		t.Fatalf("post with stage.pre=0 failed on the broken default: %v\n%s", err, log)
	}
	if s.Confext == nil || strings.Join(s.Confext.Merged, ",") != "50-user" || !strings.Contains(log, "00-flatcar-default") {
		t.Errorf("post: %s\n%s", s, log)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "written-after-post"), []byte("x\n"), 0o644); err != nil {
		t.Errorf("/etc not writable: %v", err)
	}
	// Without the switch the same root still fails: the policy is not
	// weakened for normal boots.
	root2 := flatcarRoot(t)
	os.Remove(filepath.Join(root2, "usr/lib/confexts/00-flatcar-default.raw"))
	squashfs(t, root2, "usr/lib/confexts/00-flatcar-default.raw", map[string]string{
		"etc/extension-release.d/extension-release.00-flatcar-default": "ID=otheros\n",
	})
	if _, log, err := runWithCmdline(t, root2, StagePost, ""); err == nil {
		t.Errorf("post without stage.pre=0 accepted a broken essential default:\n%s", log)
	}
}

package boot

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

const (
	strictPolicy = "root=signed+absent:usr=signed+absent"
	loosePolicy  = "root=verity+signed+encrypted+unprotected+absent:usr=verity+signed+encrypted+unprotected+absent"
)

// policyRoot is flatcarRoot (whose raw images are unsigned squashfs) with
// a strict image policy in the OS image's /usr/lib/ext-setup-root/boot.toml
// and a directory confext (not subject to the image policy) that ships an
// /etc/ext-setup-root/boot.toml, which takes precedence, with a loose
// policy.
func policyRoot(t *testing.T) string {
	root := flatcarRoot(t)
	testutil.WriteTree(t, root, map[string]string{
		"usr/lib/ext-setup-root/boot.toml":                                           "image_policy = \"" + strictPolicy + "\"\nessential_confexts = []\n",
		"var/lib/confexts/10-evil/etc/extension-release.d/extension-release.10-evil": "ID=_any\n",
		"var/lib/confexts/10-evil/etc/ext-setup-root/boot.toml":                      "image_policy = \"" + loosePolicy + "\"\nessential_confexts = []\n",
	})
	return root
}

// TestStagesApplyOnePolicy (issue 14 item 6): the pre, post and late
// stages of a boot apply the image policy of the boot.toml the pre stage
// read before the merge, never one a merged confext ships. The binary runs
// pre (the unsigned raw confexts are refused under the strict policy, the
// directory confext with the loose boot.toml is merged), then post: before,
// post read boot.toml through the merged /etc, took the loose policy and
// merged the refused confexts.
func TestStagesApplyOnePolicy(t *testing.T) {
	realEngineEnv(t)
	testutil.RequireFilesystem(t, "overlay", "squashfs")
	bin := testutil.BuildTestHooksBinary(t) // EXT_SETUP_ROOT_PROC_CMDLINE is a test-only redirection
	root := policyRoot(t)
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(cmdline, []byte("quiet\n"), 0o644))
	state := t.TempDir()
	boot := func(stage string) string {
		cmd := exec.Command(bin, "boot", "--stage="+stage, "--root="+root)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "EXT_SETUP_ROOT_LOG=stderr",
			"EXT_SETUP_ROOT_PROC_CMDLINE=" + cmdline, "EXT_SETUP_ROOT_STATE_DIR=" + state}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("stage %s: %v\n%s", stage, err, out)
		}
		return string(out)
	}
	boot("pre")
	if got := readFile(t, filepath.Join(root, "etc/ext-setup-root/boot.toml")); !strings.Contains(got, loosePolicy) {
		t.Fatalf("the merged /etc does not show the confext's boot.toml: %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/user.conf")); err == nil {
		t.Fatal("pre merged an unsigned image under the strict policy")
	}
	out := boot("post")
	for _, f := range []string{"etc/user.conf", "etc/flatcar-default.conf"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("post merged %s: it applied the policy of the merged confext's boot.toml\n%s", f, out)
		}
	}

	// The late stages (the same root as "/" after switch-root) get the
	// record; without one, /etc is read beneath the merge.
	paths.StateDir = state
	cfg, err := LoadStageConfig(root, StageLateConfext, false, nil)
	if err != nil || cfg.ImagePolicy != strictPolicy {
		t.Errorf("late stage with the record: policy %q, %v; want %q", cfg.ImagePolicy, err, strictPolicy)
	}
	must(os.RemoveAll(filepath.Join(state, "boot-config")))
	cfg, err = LoadStageConfig(root, StageLateConfext, false, nil)
	if err != nil || cfg.ImagePolicy != strictPolicy || cfg.File != "/usr/lib/ext-setup-root/boot.toml" {
		t.Errorf("late stage without a record: %+v, %v; want %q from beneath the merge", cfg, err, strictPolicy)
	}
	if plain, _ := LoadConfig(root); plain.ImagePolicy != loosePolicy {
		t.Errorf("through the merged /etc the policy is %q: the test does not show the difference", plain.ImagePolicy)
	}
}

// TestStageConfigRecord: the pre stage records the file it read and
// rereads on every run; a later stage uses the record even when boot.toml
// changed meanwhile; a dry run records nothing; a record that does not
// parse is reported and the file read again.
func TestStageConfigRecord(t *testing.T) {
	testutil.RequireRoot(t)
	old := paths.StateDir
	paths.StateDir = t.TempDir()
	t.Cleanup(func() { paths.StateDir = old })
	root := t.TempDir()
	conf := filepath.Join(root, "etc/ext-setup-root/boot.toml")
	testutil.WriteTree(t, root, map[string]string{"etc/ext-setup-root/boot.toml": "essential_confexts = [\"a\"]\n"})
	ess := func(st Stage, record bool) string {
		t.Helper()
		cfg, err := LoadStageConfig(root, st, record, nil)
		if err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		return strings.Join(cfg.EssentialConfexts, ",")
	}
	if got := ess(StagePre, false); got != "a" {
		t.Fatalf("pre: %q", got)
	}
	if got, _ := filepath.Glob(filepath.Join(paths.StateDir, "boot-config", "*")); len(got) != 0 {
		t.Fatalf("a dry run recorded %v", got)
	}
	ess(StagePre, true)
	os.WriteFile(conf, []byte("essential_confexts = [\"b\"]\n"), 0o644)
	if got := ess(StagePost, true); got != "a" {
		t.Errorf("post after boot.toml changed: %q, want the recorded a", got)
	}
	if got := ess(StagePre, true); got != "b" {
		t.Errorf("pre rerun: %q, want b (pre reads the file)", got)
	}
	if got := ess(StageLateSysext, true); got != "b" {
		t.Errorf("late after the pre rerun: %q, want b", got)
	}
	recs, _ := filepath.Glob(filepath.Join(paths.StateDir, "boot-config", "*.json"))
	if len(recs) != 1 {
		t.Fatalf("records %v", recs)
	}
	os.WriteFile(recs[0], []byte("{"), 0o600)
	os.WriteFile(conf, []byte("essential_confexts = [\"c\"]\n"), 0o644)
	if got := ess(StagePost, true); got != "c" {
		t.Errorf("post with a broken record: %q, want c read again", got)
	}
	// No boot.toml at all is recorded too (as the defaults).
	os.Remove(conf)
	ess(StagePre, true)
	os.WriteFile(conf, []byte("essential_confexts = [\"d\"]\n"), 0o644)
	cfg, err := LoadStageConfig(root, StagePost, true, nil)
	if err != nil || cfg.File != "" || cfg.EssentialConfexts != nil {
		t.Errorf("post after pre found no boot.toml: %+v, %v; want the defaults", cfg, err)
	}
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/boot"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// bootFake is a minimal engine pair that records calls.
type bootFake struct{ calls []string }

func (f *bootFake) Merged(context.Context, string, boot.Class) (bool, error) { return false, nil }
func (f *bootFake) Merge(_ context.Context, r boot.ExtRequest) (boot.ExtResult, error) {
	f.calls = append(f.calls, "merge "+string(r.Class)+" "+r.Root)
	return boot.ExtResult{Merged: []string{"00-test-default"}}, nil
}
func (f *bootFake) Refresh(_ context.Context, r boot.ExtRequest) (boot.ExtResult, error) {
	f.calls = append(f.calls, "refresh "+string(r.Class))
	return boot.ExtResult{}, nil
}
func (f *bootFake) Select(_ context.Context, root string, dry bool) (boot.SelectResult, error) {
	f.calls = append(f.calls, "select")
	return boot.SelectResult{}, nil
}

func withBootFake(t *testing.T, cmdline string) *bootFake {
	t.Helper()
	f := &bootFake{}
	old, oldCl, oldState := bootEngines, paths.ProcCmdline, paths.StateDir
	bootEngines = func(func(string) string, string, *oplog.Logger) (boot.Extensions, boot.Selector, error) {
		return f, f, nil
	}
	paths.ProcCmdline = filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(paths.ProcCmdline, []byte(cmdline), 0o644)
	paths.StateDir = t.TempDir() // the stages record boot.toml there
	t.Cleanup(func() { bootEngines, paths.ProcCmdline, paths.StateDir = old, oldCl, oldState })
	return f
}

func TestBootUsage(t *testing.T) {
	withBootFake(t, "")
	for _, args := range [][]string{nil, {"--stage=middle"}, {"--stage=pre", "extra"}, {"--bogus"}} {
		env, _, _ := testEnv()
		if c := exitCode(run(env, append([]string{"boot"}, args...))); c != 2 {
			t.Errorf("%q: exit %d, want 2", args, c)
		}
	}
}

func TestBootPreMergesIntoRoot(t *testing.T) {
	f := withBootFake(t, "quiet")
	root := t.TempDir()
	env, _, errb := testEnv()
	if err := run(env, []string{"boot", "--stage=pre", "--root=" + root}); err != nil {
		t.Fatalf("%v\n%s", err, errb)
	}
	if strings.Join(f.calls, ",") != "merge confext "+root {
		t.Errorf("calls %v", f.calls)
	}
	if tgt, _ := os.Readlink(filepath.Join(root, "var/lib/extensions.mutable/etc")); tgt != "/etc" {
		t.Errorf("link %q", tgt)
	}
	if !strings.Contains(errb.String(), "stage pre finished in ") {
		t.Errorf("no summary:\n%s", errb)
	}
}

func TestBootCmdlineDryRunAndDisable(t *testing.T) {
	f := withBootFake(t, "ext-setup-root.dry-run ext-setup-root.debug")
	root := t.TempDir()
	env, _, errb := testEnv()
	if err := run(env, []string{"boot", "--stage=pre", "--root", root}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 || len(f.calls) != 0 {
		t.Errorf("dry run changed something: %v %v", ents, f.calls)
	}
	if !strings.Contains(errb.String(), "dry run: would merge confexts") {
		t.Errorf("log:\n%s", errb)
	}

	f = withBootFake(t, "ext-setup-root.stage.post=0")
	env, _, errb = testEnv()
	if err := run(env, []string{"boot", "--stage=post", "--root", root}); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 || !strings.Contains(errb.String(), "disabled by ext-setup-root.stage.post=0") {
		t.Errorf("calls %v log:\n%s", f.calls, errb)
	}
}

func TestBootLateStages(t *testing.T) {
	oldV, oldE, oldR := systemdVersion, execStock, daemonReload
	t.Cleanup(func() { systemdVersion, execStock, daemonReload = oldV, oldE, oldR })
	daemonReload = func() error { return nil }
	var execd []string
	execStock = func(argv []string) error { execd = argv; return nil }
	for _, v := range []int{262, 258} {
		f := withBootFake(t, "")
		execd = nil
		systemdVersion = func(string) (int, error) { return v, nil }
		env, _, errb := testEnv()
		if err := run(env, []string{"boot", "--stage=late-confext", "--root=/"}); err != nil {
			t.Fatalf("%d: %v\n%s", v, err, errb)
		}
		// Ours on every version (issue 8 item 7).
		if execd != nil || strings.Join(f.calls, ",") != "refresh confext" {
			t.Errorf("%d: exec %v calls %v", v, execd, f.calls)
		}
	}
}

// TestBootLateRefreshSwitch: ext-setup-root.late-refresh= from
// paths.ProcCmdline reaches the late stage.
func TestBootLateRefreshSwitch(t *testing.T) {
	oldV, oldE, oldR := systemdVersion, execStock, daemonReload
	t.Cleanup(func() { systemdVersion, execStock, daemonReload = oldV, oldE, oldR })
	daemonReload = func() error { return nil }
	systemdVersion = func(string) (int, error) { return 262, nil }
	var execd []string
	execStock = func(argv []string) error { execd = argv; return nil }
	f := withBootFake(t, "quiet ext-setup-root.late-refresh=ours")
	env, _, errb := testEnv()
	if err := run(env, []string{"boot", "--stage=late-sysext", "--root=/"}); err != nil {
		t.Fatalf("%v\n%s", err, errb)
	}
	if execd != nil || strings.Join(f.calls, ",") != "refresh sysext" || !strings.Contains(errb.String(), "late-refresh=ours") {
		t.Errorf("ours on 262: exec %v calls %v log:\n%s", execd, f.calls, errb)
	}
	systemdVersion = func(string) (int, error) { return 252, nil }
	f = withBootFake(t, "ext-setup-root.late-refresh=stock")
	env, _, errb = testEnv()
	if err := run(env, []string{"boot", "--stage=late-confext", "--root=/"}); err != nil {
		t.Fatalf("%v\n%s", err, errb)
	}
	if strings.Join(execd, " ") != "systemd-confext refresh" || len(f.calls) != 0 {
		t.Errorf("stock on 252: exec %v calls %v log:\n%s", execd, f.calls, errb)
	}
}

// essentialFake records the essential patterns of each request.
type essentialFake struct {
	bootFake
	essential []string
}

func (f *essentialFake) Merge(ctx context.Context, r boot.ExtRequest) (boot.ExtResult, error) {
	f.essential = r.Essential
	return f.bootFake.Merge(ctx, r)
}

func TestBootEssentialPrecedence(t *testing.T) {
	withBootFake(t, "")
	f := &essentialFake{}
	bootEngines = func(func(string) string, string, *oplog.Logger) (boot.Extensions, boot.Selector, error) {
		return f, f, nil
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib/ext-setup-root"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/ext-setup-root/boot.toml"), []byte("essential_confexts = [\"00-test-*\"]\n"), 0o644)
	for _, tc := range []struct {
		args    []string
		cmdline string
		want    string
	}{
		{nil, "", "00-test-*"},
		{[]string{"--essential=00-flag*"}, "", "00-flag*"},
		{[]string{"--essential=00-flag*"}, "ext-setup-root.essential=00-test-default", "00-test-default"},
	} {
		os.WriteFile(paths.ProcCmdline, []byte(tc.cmdline), 0o644)
		os.RemoveAll(filepath.Join(root, "var"))
		env, _, errb := testEnv()
		if err := run(env, append([]string{"boot", "--stage=pre", "--root=" + root}, tc.args...)); err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, errb)
		}
		if strings.Join(f.essential, ",") != tc.want {
			t.Errorf("%v %q: essential %v, want %s", tc.args, tc.cmdline, f.essential, tc.want)
		}
	}
	// A broken config is logged and ignored: the default applies.
	os.WriteFile(filepath.Join(root, "usr/lib/ext-setup-root/boot.toml"), []byte("essential = 1\n"), 0o644)
	os.WriteFile(paths.ProcCmdline, nil, 0o644)
	env, _, errb := testEnv()
	if err := run(env, []string{"boot", "--stage=pre", "--root=" + root}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.essential, ",") != "00-*default*" || !strings.Contains(errb.String(), "unknown key(s) essential") {
		t.Errorf("broken config: essential %v\n%s", f.essential, errb)
	}
}

// policyFake records the image policy of each refresh request.
type policyFake struct {
	bootFake
	policies []string
}

func (f *policyFake) Refresh(ctx context.Context, r boot.ExtRequest) (boot.ExtResult, error) {
	f.policies = append(f.policies, r.ImagePolicy)
	return f.bootFake.Refresh(ctx, r)
}

// TestBootLatePolicyFromConfig: the late stages apply boot.toml's
// image_policy like the initrd stages do (issue 7), and the kernel
// command line's ext-setup-root.image-policy= wins over it.
func TestBootLatePolicyFromConfig(t *testing.T) {
	oldV, oldE, oldR := systemdVersion, execStock, daemonReload
	t.Cleanup(func() { systemdVersion, execStock, daemonReload = oldV, oldE, oldR })
	daemonReload = func() error { return nil }
	systemdVersion = func(string) (int, error) { return 262, nil }
	execStock = func(argv []string) error { t.Errorf("stock tool run: %v", argv); return nil }
	withBootFake(t, "")
	f := &policyFake{}
	bootEngines = func(func(string) string, string, *oplog.Logger) (boot.Extensions, boot.Selector, error) {
		return f, f, nil
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/ext-setup-root"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/ext-setup-root/boot.toml"), []byte("image_policy = \"root=signed+absent:usr=signed+absent\"\n"), 0o644)
	for _, tc := range []struct{ stage, cmdline, want string }{
		{"late-confext", "", "root=signed+absent:usr=signed+absent"},
		{"late-sysext", "quiet", "root=signed+absent:usr=signed+absent"},
		{"late-confext", "ext-setup-root.image-policy=root=verity+signed", "root=verity+signed"},
	} {
		f.policies = nil
		os.WriteFile(paths.ProcCmdline, []byte(tc.cmdline), 0o644)
		env, _, errb := testEnv()
		if err := run(env, []string{"boot", "--stage=" + tc.stage, "--root=" + root}); err != nil {
			t.Fatalf("%s %q: %v\n%s", tc.stage, tc.cmdline, err, errb)
		}
		if strings.Join(f.policies, ",") != tc.want {
			t.Errorf("%s %q: policies %q, want %q\n%s", tc.stage, tc.cmdline, f.policies, tc.want, errb)
		}
	}
}

// TestBootLateHonoursCmdline (issue 18 item 2): the late stages read the
// kill switches and the dry run from the kernel command line (before, a
// booted `rd.systemd.confext=0 ext-setup-root.dry-run` or
// `systemd.confext=no` still refreshed).
func TestBootLateHonoursCmdline(t *testing.T) {
	oldV, oldE, oldR := systemdVersion, execStock, daemonReload
	t.Cleanup(func() { systemdVersion, execStock, daemonReload = oldV, oldE, oldR })
	systemdVersion = func(string) (int, error) { return 262, nil }
	daemonReload = func() error { t.Error("daemon-reload"); return nil }
	execStock = func(argv []string) error { t.Errorf("exec %v", argv); return nil }
	for _, tc := range []struct{ stage, cmdline, want string }{
		{"late-confext", "rd.systemd.confext=0 ext-setup-root.dry-run", "dry run: would refresh confexts"},
		{"late-confext", "systemd.confext=no", "disabled by systemd.confext=0"},
		{"late-sysext", "systemd.sysext=off ext-setup-root.late-refresh=stock", "disabled by systemd.sysext=0"},
	} {
		f := withBootFake(t, tc.cmdline)
		env, _, errb := testEnv()
		if err := run(env, []string{"boot", "--stage=" + tc.stage, "--root=/"}); err != nil {
			t.Fatalf("%q: %v\n%s", tc.cmdline, err, errb)
		}
		if len(f.calls) != 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: calls %v, log lacks %q:\n%s", tc.cmdline, f.calls, tc.want, errb)
		}
	}
}

// TestBootFlatcarDefaultConfextEssential (issue 18 item 8): on a root with
// the Flatcar layout (os-release ID=flatcar) the vendor default confext
// is essential by name, as bootengine requires flatcar-default: a boot
// where it did not merge fails; the glob default `00-*default*` let it
// pass when nothing matched.
func TestBootFlatcarDefaultConfextEssential(t *testing.T) {
	withBootFake(t, "") // its merge reports only 00-test-default
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("ID=flatcar\nVERSION_ID=1\n"), 0o644)
	env, _, errb := testEnv()
	err := run(env, []string{"boot", "--stage=pre", "--root=" + root})
	if err == nil || !strings.Contains(errb.String(), `essential confext "00-flatcar-default" not found`) {
		t.Errorf("Flatcar root without its default confext: %v\n%s", err, errb)
	}
	// The same root as another OS: the glob default is satisfied.
	os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("ID=debian\nVERSION_ID=13\n"), 0o644)
	env, _, errb = testEnv()
	if err := run(env, []string{"boot", "--stage=pre", "--root=" + root}); err != nil {
		t.Errorf("non-Flatcar root: %v\n%s", err, errb)
	}
}

// TestBootSysrootSwitchPerUnit (issue 18 item 3): the pre stage (systemd
// 262's systemd-confext-sysroot.service) reads systemd.confext= only:
// rd.systemd.confext= neither turns it on again nor off.
func TestBootSysrootSwitchPerUnit(t *testing.T) {
	for cmdline, wantMerge := range map[string]bool{
		"systemd.confext=0 rd.systemd.confext=1": false,
		"rd.systemd.confext=0":                   true,
		"systemd.confext=0 systemd.confext=1":    false, // the unit's condition matches the word
	} {
		f := withBootFake(t, cmdline)
		env, _, errb := testEnv()
		if err := run(env, []string{"boot", "--stage=pre", "--root=" + t.TempDir()}); err != nil {
			t.Fatalf("%q: %v\n%s", cmdline, err, errb)
		}
		if merged := len(f.calls) > 0; merged != wantMerge {
			t.Errorf("%q: merged %v, want %v (calls %v)\n%s", cmdline, merged, wantMerge, f.calls, errb)
		}
	}
}

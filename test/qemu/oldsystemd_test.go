package qemu

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// addConfextOnDemandUnit is addConfextUnit, run only on boots whose
// kernel command line has extsr.add-confext.
var addConfextOnDemandUnit = strings.Replace(addConfextUnit, "\n[Service]", "ConditionKernelCommandLine=extsr.add-confext\n\n[Service]", 1)

// lateRefreshRoot is the root of the late refresh scenarios: the stat
// watcher over /etc from before the late refresh until after it, the
// directory confext a unit copies to /run/confexts before the refresh (on
// boots with extsr.add-confext; TestQEMULateRefreshAtomic passes its
// every-boot unit instead), and the reporter hook printing both.
func lateRefreshRoot(t *testing.T, in *Inputs, addUnit string) string {
	t.Helper()
	root := RootTree(t, in)
	buildWatcher(t, filepath.Join(root, "var/lib/extsr/watcher"))
	nc := filepath.Join(root, "var/lib/extsr", newConfext)
	writeFile(t, nc, "etc/extension-release.d/extension-release."+newConfext, "ID=_any\n", 0o644)
	writeFile(t, nc, "etc/extsr/new.conf", "from-new-confext\n", 0o644)
	for name, unit := range map[string]string{
		"extsr-watch.service":       watchUnit,
		"extsr-add-confext.service": addUnit,
		"extsr-watch-stop.service":  watchStopUnit,
	} {
		writeFile(t, root, "etc/systemd/system/"+name, unit, 0o644)
		symlink(t, root, "etc/systemd/system/sysinit.target.wants/"+name, "/etc/systemd/system/"+name)
	}
	writeFile(t, root, "etc/extsr/check.d/50-watch", watchHook, 0o755)
	return root
}

// watchResult returns the watcher's failed stats and a summary line.
func watchResult(t *testing.T, rep *Report) (int, string) {
	t.Helper()
	fails, err := strconv.Atoi(rep.Get("watch_fails"))
	if err != nil {
		t.Errorf("no watcher result (watch_fails=%q, unit %q); console tail:\n%s", rep.Get("watch_fails"), rep.Get("watch_unit"), rep.Tail(60))
		return -1, ""
	}
	return fails, "rounds " + rep.Get("watch_rounds") + " over " + rep.Get("watch_elapsed_ms") + " ms; " +
		rep.Get("watch_path0") + ": " + rep.Get("watch_fails0") + " failed stats, longest gap " + rep.Get("watch_max_gap_us0") + " us; " +
		rep.Get("watch_path1") + ": " + rep.Get("watch_fails1") + " failed stats, longest gap " + rep.Get("watch_max_gap_us1") + " us"
}

// requireLateUnchanged: the late stage of class found the initrd's merge
// at h unchanged, and h still is the very mount the initrd attached.
func requireLateUnchanged(t *testing.T, rep *Report, boot int, stage, class, h, idkey string) {
	t.Helper()
	s, ok := rep.Stages()[stage]
	if !ok || s.Result != "finished" || !strings.Contains(s.Line, "unchanged") {
		t.Errorf("boot %d: %s summary %q, want finished and unchanged", boot, stage, s.Line)
	}
	want, got := rep.InitrdMountID(class, h), rep.Get(idkey)
	if want == "" || got != want {
		t.Errorf("boot %d: %s is mount id %q in the booted system, the initrd's %s merge was %q", boot, h, got, class, want)
	}
}

// TestQEMUSystemd257 boots an OS image built from Debian 13 "trixie" (its
// kernel 6.12, its systemd 257 in the initramfs and the booted system, its
// dracut 106), with ext-setup-root embedded by `make install` and `dracut
// --add ext-setup-root`. On systemd older than 260 the host drop-ins run
// ext-setup-root's late refresh (no kernel command line switch here: the
// default). Boot 1, nothing changed since the initrd: the late confext
// stage skips, /etc keeps the initrd's mount id, the watcher sees no
// failed stat. Boot 2, a confext added to /run/confexts before the late
// refresh: the merge is replaced atomically, the new file is in /etc, and
// the watcher over the default confext's file and the upper /etc sees 0
// failed stats.
func TestQEMUSystemd257(t *testing.T) {
	base := RequireInputs(t)
	in := WithKernel(t, base, Kernel{Suite: "trixie", Name: "6.12-trixie"})
	in = WithRootfs(t, in, "trixie")
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: lateRefreshRoot(t, in, addConfextOnDemandUnit), OEM: OEMTree(t)})
	m.Timeout = 12 * time.Minute

	for boot, extra := range []string{"", "extsr.add-confext"} {
		rep := m.Boot("A", extra)
		n := boot + 1
		RequireStagesFinished(t, rep)
		RequireNoFailedUnits(t, rep)
		t.Logf("boot %d: systemd-confext.service journal: %q", n, rep.All("confext_journal"))
		if tool := stockConfextLines(rep); len(tool) != 0 {
			t.Errorf("boot %d: systemd-confext 257 itself logged (the drop-in must run ext-setup-root's refresh): %q", n, tool)
		}
		if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext") {
			t.Errorf("boot %d: default confext file not in /etc: %q", n, rep.All("file"))
		}
		if rep.Get("etc_writable") != "yes" {
			t.Errorf("boot %d: /etc not writable", n)
		}
		fails, sum := watchResult(t, rep)
		t.Logf("boot %d (%s): watcher: %s", n, map[bool]string{true: "nothing changed", false: "confext added"}[extra == ""], sum)
		if fails != 0 {
			t.Errorf("boot %d: the watcher saw %d failed stats, want 0: %s", n, fails, sum)
		}
		// This disk has no sysext: /usr is the plain USR partition and
		// systemd-sysext.service has nothing to do.
		if extra == "" {
			requireLateUnchanged(t, rep, n, "late-confext", "confext", "/etc", "etc_mount_id")
			if got := rep.Get("new_conf"); strings.HasPrefix(got, "from-new-confext") {
				t.Errorf("boot 1: the new confext is in /etc although it was not added")
			}
		} else {
			if st, ok := rep.Stages()["late-confext"]; !ok || st.Result != "finished" || strings.Contains(st.Line, "unchanged") || strings.Contains(st.Line, "gap") {
				t.Errorf("boot 2: late-confext summary %q, want finished, replaced, no gap", st.Line)
			}
			if got := rep.Get("new_conf"); !strings.HasPrefix(got, "from-new-confext") {
				t.Errorf("boot 2: the new confext's file is not in /etc: %q (/run/confexts: %q)", got, rep.Get("run_confexts"))
			}
		}
		if t.Failed() {
			t.Fatalf("boot %d failed; log %s", n, rep.LogPath)
		}
	}
}

// TestQEMULateRefreshNoBeneath measures the gap users of a kernel without
// MOVE_MOUNT_BENEATH get: Debian 12's Linux 6.1 with the forky image. A
// confext is added before the late refresh, which (late-refresh=ours) then
// replaces the merge by unmount-then-mount; the watcher counts the failed
// stats of the default confext's file and of the upper /etc. Asserted:
// the refresh worked (new file, default file, /etc writable) and reported
// its gap in the summary line; the watcher's figures are the measurement.
func TestQEMULateRefreshNoBeneath(t *testing.T) {
	base := RequireInputs(t)
	in := WithKernel(t, base, Kernel{Suite: "bookworm", Name: "6.1-bookworm"})
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: lateRefreshRoot(t, in, addConfextOnDemandUnit), OEM: OEMTree(t)})
	m.Timeout = 12 * time.Minute
	rep := m.Boot("A", "extsr.add-confext ext-setup-root.late-refresh=ours")
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	st, ok := rep.Stages()["late-confext"]
	if !ok || st.Result != "finished" || !strings.Contains(st.Line, "1 replaced with a gap") {
		t.Errorf("late-confext summary %q, want finished with its gap counted", st.Line)
	}
	if got := rep.Get("new_conf"); !strings.HasPrefix(got, "from-new-confext") {
		t.Errorf("the new confext's file is not in /etc: %q", got)
	}
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext") {
		t.Errorf("default confext file gone after the refresh: %q", rep.All("file"))
	}
	if rep.Get("etc_writable") != "yes" {
		t.Errorf("/etc not writable after the refresh")
	}
	fails, sum := watchResult(t, rep)
	t.Logf("Linux %s, unmount-then-mount late refresh: %d failed stats; %s", rep.Get("kernel"), fails, sum)
}

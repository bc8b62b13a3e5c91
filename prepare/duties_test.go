package prepare

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestDryRunIsThePlan: a dry run changes nothing and lists exactly the
// actions a real run then takes.
func TestDryRunIsThePlan(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setfacl")
	for _, sc := range []scenario{dedupScenario(), whiteoutScenario(), resetScenario(`/etc(/ssh(/.*)?)?|/home(/core(/.*)?)?`)} {
		t.Run(sc.name, func(t *testing.T) {
			root := setupRoot(t, sc)
			before := snapshot(t, root, "/usr")
			plan, _ := runOurs(t, root, diffConfig(), true)
			if d := diffSnap(before, snapshot(t, root, "/usr")); d != "" {
				t.Fatalf("dry run changed the tree:\n%s", d)
			}
			done, _ := runOurs(t, root, diffConfig(), false)
			p, d := actionSet(plan), actionSet(done)
			if p != d {
				t.Fatalf("plan:\n%s\ndone:\n%s", p, d)
			}
			if !strings.Contains(plan.String(), "prepare: ") || len(plan.Actions) == 0 {
				t.Fatalf("plan text: %s", plan)
			}
		})
	}
}

func actionSet(r *Result) string {
	var s []string
	for _, a := range r.Actions {
		s = append(s, a.String())
	}
	sort.Strings(s)
	return strings.Join(s, "\n")
}

// TestTmpfilesRunsRootConfigs: the vendor commands and systemd-tmpfiles
// run with --root and only the configs the root has; a missing binary is
// noted, not an error.
func TestTmpfilesRunsRootConfigs(t *testing.T) {
	testutil.RequireRoot(t)
	root := setupRoot(t, scenario{usr: []ent{{path: "lib/tmpfiles.d/baselayout.conf", kind: 'f', data: "d /var/log/journal\n"},
		{path: "share/flatcar/etc", kind: 'd'}}, root: []ent{{path: "etc/tmpfiles.d/base_image_var.conf", kind: 'f'}}})
	bin := t.TempDir()
	rec := filepath.Join(bin, "calls")
	script := fmt.Sprintf("#!/bin/sh\necho \"$0 $*\" >> %s\n", rec)
	for _, n := range []string{"systemd-tmpfiles", "flatcar-tmpfiles"} {
		must(t, os.WriteFile(filepath.Join(bin, n), []byte(script), 0o755))
	}
	c := Default()
	c.Reset.Enabled, c.Dedup.Enabled, c.Whiteouts.Enabled, c.OEM.Enabled, c.MachineID.Enabled = false, false, false, false, false
	c.Tmpfiles.Binary = filepath.Join(bin, "systemd-tmpfiles")
	c.Tmpfiles.Commands = [][]string{{filepath.Join(bin, "flatcar-tmpfiles"), "{ROOT}"}, {"/nonexistent/tool"}}
	res, log := runOurs(t, root, c, false)
	b, _ := os.ReadFile(rec)
	want := fmt.Sprintf("%s/flatcar-tmpfiles %s\n%s/systemd-tmpfiles --root=%s --create baselayout.conf base_image_var.conf\n", bin, root, bin, root)
	if string(b) != want || res.Tmpfiles != "ran" || len(res.Problems) != 0 {
		t.Fatalf("calls:\n%s\nwant:\n%s\nresult %+v\n%s", b, want, res, log)
	}
	c.Tmpfiles.Binary = "/nonexistent/systemd-tmpfiles"
	if res, _ := runOurs(t, root, c, false); res.Tmpfiles != "not present" || len(res.Problems) != 0 {
		t.Fatalf("missing binary: %+v", res)
	}
	c.Tmpfiles.Binary = filepath.Join(bin, "systemd-tmpfiles")
	must(t, os.WriteFile(c.Tmpfiles.Binary, []byte("#!/bin/sh\nexit 65\n"), 0o755))
	if res, _ := runOurs(t, root, c, false); res.Tmpfiles != "failed" || len(res.Problems) != 1 {
		t.Fatalf("failing binary: %+v", res)
	}
	c.Tmpfiles.Configs = []string{"absent.conf"}
	if res, _ := runOurs(t, root, c, false); res.Tmpfiles != "nothing to do" {
		t.Fatalf("no config: %+v", res)
	}
}

// TestMachineIDAndOEM: the blank machine-id goes, a real one stays; the
// initrd's OEM tree is copied into a mounted /oem only, with owners,
// modes, times, xattrs and ACLs.
func TestMachineIDAndOEM(t *testing.T) {
	testutil.RequireRoot(t)
	src := t.TempDir()
	// xattrs and ACLs travel too, as with the script's cp -a (snapshot
	// compares them).
	writeEnts(t, src, []ent{{path: "oem-release", kind: 'f', data: "ID=pxe\n"}, {path: "bin", kind: 'd', mode: 0o755, dacl: "g:100:rx"},
		{path: "bin/run", kind: 'f', data: "#!/bin/sh\n", mode: 0o755, xattr: map[string]string{"user.oem": "pxe", "trusted.oem": "t"}},
		{path: "link", kind: 'l', data: "bin/run"}, {path: "grub.cfg", kind: 'f', data: "set linux_append=x\n", uid: 500, mode: 0o600, acl: "u:600:r"}})
	c := Default()
	c.Reset.Enabled, c.Dedup.Enabled, c.Whiteouts.Enabled, c.Tmpfiles.Enabled = false, false, false, false
	c.OEM.Source = src
	for _, mounted := range []bool{false, true} {
		root := setupRoot(t, scenario{usr: []ent{{path: "share/flatcar/etc", kind: 'd'}},
			root: []ent{{path: "etc/machine-id", kind: 'f', data: blank}, {path: "oem", kind: 'd'}, {path: "oem/grub.cfg", kind: 'f', data: "old"}}})
		if mounted {
			oem := filepath.Join(root, "oem")
			must(t, unix.Mount("tmpfs", oem, "tmpfs", 0, "mode=0755"))
			t.Cleanup(func() { unix.Unmount(oem, unix.MNT_DETACH) })
		}
		res, log := runOurs(t, root, c, false)
		if _, err := os.Stat(filepath.Join(root, "etc/machine-id")); !os.IsNotExist(err) || !res.MachineID {
			t.Fatalf("blank machine-id kept: %v %+v", err, res)
		}
		got := snapshot(t, filepath.Join(root, "oem"))
		if !mounted {
			if res.OEM != 0 || len(got) != 1 {
				t.Fatalf("copied into an unmounted /oem: %v", got)
			}
			continue
		}
		if d := diffSnap(snapshot(t, src), got); d != "" || res.OEM != 5 {
			t.Fatalf("OEM copy differs (%d copied):\n%s\n%s", res.OEM, d, log)
		}
		// Rerun: same tree.
		runOurs(t, root, c, false)
		if d := diffSnap(snapshot(t, src), snapshot(t, filepath.Join(root, "oem"))); d != "" {
			t.Fatalf("rerun:\n%s", d)
		}
	}
	root := setupRoot(t, scenario{usr: []ent{{path: "share/flatcar/etc", kind: 'd'}},
		root: []ent{{path: "etc/machine-id", kind: 'f', data: "0123456789abcdef0123456789abcdef\n"}}})
	if res, _ := runOurs(t, root, c, false); res.MachineID {
		t.Fatalf("real machine-id removed")
	}
}

// TestHostileSmallFiles: the files prepare reads (machine-id, the reset
// flag, the whiteout list) go through the module's bounded reader, so a
// FIFO or a character device there is refused by type, never opened for
// reading: no hang, no unbounded read, the device is left alone. (The
// previous reader opened O_NONBLOCK before its type check, so it did not
// hang either; this guards the property, it is not a regression test.)
func TestHostileSmallFiles(t *testing.T) {
	testutil.RequireRoot(t)
	c := Default()
	c.Dedup.Enabled, c.Tmpfiles.Enabled, c.OEM.Enabled = false, false, false
	root := setupRoot(t, scenario{
		usr: []ent{{path: "share/flatcar/etc", kind: 'd'},
			{path: "share/flatcar/etc-no-whiteouts", kind: 'c', rdev: unix.Mkdev(1, 5)}},
		root: []ent{{path: "etc/machine-id", kind: 'p'}, {path: "selective-os-reset", kind: 'p'}}})
	done := make(chan struct{})
	var res *Result
	go func() {
		defer close(done)
		res, _ = runOurs(t, root, c, false)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("prepare still running after 20 s with FIFOs as machine-id and reset flag")
	}
	if res.MachineID {
		t.Errorf("a FIFO machine-id was treated as the blank placeholder")
	}
	for _, p := range []string{"etc/machine-id", "selective-os-reset"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, p), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
			t.Errorf("%s: %v, mode %o; want the FIFO left alone", p, err, st.Mode)
		}
	}
}

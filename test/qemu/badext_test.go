package qemu

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestQEMUBadExtension: an enabled extension whose image is not a valid
// squashfs and one whose extension-release does not match the OS, next to
// a good one and a corrupt user confext: the boot completes, the errors
// name the bad images in the journal, the good extension and the default
// confext are merged.
func TestQEMUBadExtension(t *testing.T) {
	in := RequireInputs(t)
	root := RootTree(t, in)
	oem := OEMTree(t)
	writeFile(t, root, "etc/flatcar/enabled-sysext.conf", "foo\ncorrupt\nwrongrel\n", 0o644)
	sx := filepath.Join(root, "etc/flatcar/sysext")
	FlatcarSysext("foo", VersionA).Build(t, filepath.Join(sx, "flatcar-foo-"+VersionA+".raw"))
	bad := FlatcarSysext("corrupt", VersionA)
	bad.Corrupt = true
	bad.Build(t, filepath.Join(sx, "flatcar-corrupt-"+VersionA+".raw"))
	wrong := FlatcarSysext("wrongrel", VersionA)
	wrong.Release = "ID=fedora\nVERSION_ID=40\n"
	wrong.Build(t, filepath.Join(sx, "flatcar-wrongrel-"+VersionA+".raw"))
	Ext{Name: "broken", Confext: true, Corrupt: true}.Build(t, filepath.Join(root, "var/lib/confexts/broken.raw"))
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: oem})

	rep := m.Boot("A", "")
	st := rep.Stages()
	for _, name := range []string{"pre", "post"} {
		if _, ok := st[name]; !ok {
			t.Errorf("no summary line for stage %s", name)
		}
	}
	if !rep.AnyContains("usr_ext", "foo-"+VersionA) {
		t.Errorf("good sysext flatcar-foo not merged next to the bad ones: %q", rep.Get("usr_ext"))
	}
	if !rep.AnyContains("file", "/etc/extsr/default.conf: from-default-confext") {
		t.Errorf("default confext not merged next to a corrupt user confext: %q", rep.All("file"))
	}
	all := strings.Join(append(append(rep.All("esr_kmsg"), rep.All("esr_log")...), rep.All("esr_unit")...), "\n")
	for _, name := range []string{"flatcar-corrupt", "flatcar-wrongrel", "broken"} {
		if !strings.Contains(all, name) {
			t.Errorf("no ext-setup-root log line names %s", name)
		}
	}
	t.Logf("stage summaries: pre %q; post %q", st["pre"].Line, st["post"].Line)
}

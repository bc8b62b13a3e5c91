package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

// Ext describes an extension image to build for a scenario.
type Ext struct {
	// Name is the extension name systemd derives from the file or link it
	// is found under (file name without .raw), e.g. "oem-test" for
	// /etc/extensions/oem-test.raw.
	Name    string
	Confext bool              // confext (etc/...) instead of sysext (usr/...)
	Release string            // extension-release content; default "ID=_any\n"
	Files   map[string]string // path inside the image -> content
	Links   map[string]string // path inside the image -> symlink target
	Corrupt bool              // write garbage instead of a squashfs
}

// Build writes the squashfs image to out.
func (e Ext) Build(t testing.TB, out string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if e.Corrupt {
		// A squashfs magic followed by garbage: looks like an image to a
		// quick probe, fails to mount.
		garbage := make([]byte, 64<<10)
		copy(garbage, "hsqs")
		for i := 4; i < len(garbage); i++ {
			garbage[i] = byte(i * 7)
		}
		if err := os.WriteFile(out, garbage, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	tree := t.TempDir()
	rel := e.Release
	if rel == "" {
		rel = "ID=_any\n"
	}
	if e.Confext {
		writeFile(t, tree, "etc/extension-release.d/extension-release."+e.Name, rel, 0o644)
	} else {
		writeFile(t, tree, "usr/lib/extension-release.d/extension-release."+e.Name, rel, 0o644)
	}
	for p, c := range e.Files {
		writeFile(t, tree, p, c, 0o644)
	}
	for p, target := range e.Links {
		symlink(t, tree, p, target)
	}
	os.Remove(out)
	run(t, "mksquashfs", tree, out, "-noappend", "-quiet", "-no-progress", "-all-root", "-comp", "zstd")
}

package systemd262

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Image kinds a Fixture can hold.
const (
	KindDir      = "dir"
	KindSquashfs = "squashfs"
	KindErofs    = "erofs"
)

// Upper-dir layouts of a Fixture.
const (
	// LayoutSymlink is Flatcar's: /var/lib/extensions.mutable/etc -> /etc,
	// so /etc itself is the upper dir.
	LayoutSymlink = "symlink"
	// LayoutSeparate has a real /var/lib/extensions.mutable/etc directory.
	LayoutSeparate = "separate"
	// LayoutNone has no /var/lib/extensions.mutable at all.
	LayoutNone = "none"
)

// Image describes one confext of a Fixture.
type Image struct {
	Name string // image name (file name without .raw)
	Kind string // KindDir, KindSquashfs, KindErofs
	// Dir is the search directory relative to the root, default
	// var/lib/confexts for directories and usr/lib/confexts for raw files.
	Dir string
	// Release is the extension-release content, default "ID=_any\n".
	Release string
	// Entry is the file name inside Dir, default Name (directory) or
	// Name+".raw"; it may name a file inside a .v directory, for example
	// "vp.v/vp_1.10".
	Entry string
}

// Fixture is the input of one differential case: a root with an os-release,
// some files in /etc, an upper-dir layout and confext images.
type Fixture struct {
	Layout string
	Images []Image
}

// StandardImages returns the mixed set the differential tests use: one
// directory (ID=testos VERSION_ID=1.0, matching the host), one squashfs and
// one erofs (ID=_any). They overlap on shared.conf so layer order matters.
func StandardImages() []Image {
	return []Image{
		{Name: "dir1", Kind: KindDir, Release: "ID=testos\nVERSION_ID=1.0\n"},
		{Name: "sq1", Kind: KindSquashfs},
		{Name: "er1", Kind: KindErofs, Dir: "var/lib/confexts"},
	}
}

// DiscoveryImages returns a set exercising discovery and validation rules
// both tools must apply alike: a .v directory (newest version wins), a
// class-suffixed raw name, an image in /run/confexts shadowing one of the
// same name in /usr/lib/confexts, and two images that fail validation (ID and
// VERSION_ID mismatch) and must be left out. Names accepted: see
// AcceptedNames.
func DiscoveryImages() []Image {
	return []Image{
		{Name: "vp", Kind: KindDir, Entry: "vp.v/vp_1.9"},
		{Name: "vp", Kind: KindDir, Entry: "vp.v/vp_1.10"},
		{Name: "sfx", Kind: KindSquashfs, Entry: "sfx.confext.raw", Dir: "var/lib/confexts"},
		{Name: "shadow", Kind: KindDir, Dir: "run/confexts"},
		{Name: "shadow", Kind: KindErofs, Dir: "usr/lib/confexts"},
		{Name: "badid", Kind: KindDir, Release: "ID=other\nVERSION_ID=1.0\n"},
		{Name: "badver", Kind: KindSquashfs, Release: "ID=testos\nVERSION_ID=2.0\n"},
		{Name: "dir1", Kind: KindDir, Release: "ID=testos\nVERSION_ID=1.0\n"},
	}
}

// AcceptedNames returns the sorted, distinct names of images that pass
// validation (those whose release does not mismatch the fixture host).
func AcceptedNames(images []Image) []string {
	seen := map[string]bool{}
	var out []string
	for _, im := range images {
		if strings.HasPrefix(im.Name, "bad") || seen[im.Name] {
			continue
		}
		seen[im.Name] = true
		out = append(out, im.Name)
	}
	sort.Strings(out)
	return out
}

// MixedImages returns n images alternating directory and squashfs, for
// benchmarks.
func MixedImages(n int) []Image {
	var out []Image
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			out = append(out, Image{Name: fmt.Sprintf("d%03d", i), Kind: KindDir})
		} else {
			out = append(out, Image{Name: fmt.Sprintf("s%03d", i), Kind: KindSquashfs})
		}
	}
	return out
}

// writeFile creates path (and parents) with content, mode and owner.
func writeFile(path, content string, mode os.FileMode, uid, gid int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Lchown(path, uid, gid)
}

// populateImage writes the tree of image im into dir (dir/etc/...). The
// content exercises modes, owners, a symlink, a subdirectory and a file
// shared with other images.
func populateImage(dir string, im Image) error {
	rel := im.Release
	if rel == "" {
		rel = "ID=_any\n"
	}
	etc := filepath.Join(dir, "etc")
	files := []struct {
		p, c     string
		mode     os.FileMode
		uid, gid int
	}{
		{"extension-release.d/extension-release." + im.Name, rel, 0o644, 0, 0},
		{im.Name + ".conf", im.Name + "\n", 0o644, 0, 0},
		{"shared.conf", "from " + im.Name + "\n", 0o644, 0, 0},
		{im.Name + ".d/secret", "secret of " + im.Name + "\n", 0o600, 0, 0},
		{im.Name + ".d/owned", "owned\n", 0o640, 1000, 1001},
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(etc, f.p), f.c, f.mode, f.uid, f.gid); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(etc, im.Name+".d"), 0o750); err != nil {
		return err
	}
	return os.Symlink(im.Name+".conf", filepath.Join(etc, im.Name+".link"))
}

// Build creates the fixture under root (a host path): etc/os-release
// (ID=testos VERSION_ID=1.0), files in etc, the layout, and the images.
// Raw images are built with the host's mksquashfs / mkfs.erofs.
func (f Fixture) Build(root string) error {
	for _, w := range []struct {
		p, c string
		mode os.FileMode
	}{
		{"etc/os-release", "ID=testos\nVERSION_ID=1.0\n", 0o644},
		{"etc/upper.conf", "upper\n", 0o644},
		{"etc/shared.conf", "from upper /etc\n", 0o644},
		{"etc/upper.d/x", "x\n", 0o600},
	} {
		if err := writeFile(filepath.Join(root, w.p), w.c, w.mode, 0, 0); err != nil {
			return err
		}
	}
	for _, d := range []string{"run", "var/lib/confexts", "usr/lib/confexts"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	mut := filepath.Join(root, "var/lib/extensions.mutable")
	switch f.Layout {
	case LayoutSymlink:
		if err := os.MkdirAll(mut, 0o755); err != nil {
			return err
		}
		if err := os.Symlink("/etc", filepath.Join(mut, "etc")); err != nil {
			return err
		}
	case LayoutSeparate:
		if err := writeFile(filepath.Join(mut, "etc/inmut.conf"), "in mutable dir\n", 0o644, 0, 0); err != nil {
			return err
		}
	case LayoutNone, "":
	default:
		return fmt.Errorf("fixture: unknown layout %q", f.Layout)
	}
	tmp, err := os.MkdirTemp("", "sd262-img-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, im := range f.Images {
		dir := im.Dir
		switch {
		case dir != "":
		case im.Kind == KindDir:
			dir = "var/lib/confexts"
		default:
			dir = "usr/lib/confexts"
		}
		entry := im.Entry
		if entry == "" {
			entry = im.Name
			if im.Kind != KindDir {
				entry += ".raw"
			}
		}
		dst := filepath.Join(root, dir, entry)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if im.Kind == KindDir {
			if err := populateImage(dst, im); err != nil {
				return err
			}
			continue
		}
		src, err := os.MkdirTemp(tmp, im.Name)
		if err != nil {
			return err
		}
		if err := populateImage(src, im); err != nil {
			return err
		}
		out := dst
		var cmd *exec.Cmd
		switch im.Kind {
		case KindSquashfs:
			cmd = exec.Command("mksquashfs", src, out, "-noappend", "-quiet", "-no-progress")
		case KindErofs:
			cmd = exec.Command("mkfs.erofs", "--quiet", out, src)
		default:
			return fmt.Errorf("fixture: unknown image kind %q", im.Kind)
		}
		if o, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, o)
		}
	}
	return nil
}

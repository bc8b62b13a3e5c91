// Package discover finds a class's extension images inside a root the way
// systemd 262's image_discover() does (search paths, "*.raw", ".v/"
// directories, shadowing by name) and validates what an image may carry:
// its extension-release file (ReadReleaseFile) and forbidden content. It
// reads only; identity, records and the merge build on it.
package discover

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
	"github.com/ext-setup-root/ext-setup-root/vpick"
)

// ImageType is the kind of a discovered image.
type ImageType int

// Image types systemd-sysext merges (btrfs subvolumes are treated as
// directories; see docs/extension-rules.md).
const (
	// ImageDirectory is a plain directory tree, bind-mounted read-only.
	ImageDirectory ImageType = iota
	// ImageRaw is a regular "*.raw" file: a bare squashfs/erofs file system
	// or a GPT disk image.
	ImageRaw
	// ImageBlock is a block device node.
	ImageBlock
)

// String returns systemd's name of the type ("directory", "raw", "block").
func (t ImageType) String() string {
	switch t {
	case ImageDirectory:
		return "directory"
	case ImageRaw:
		return "raw"
	case ImageBlock:
		return "block"
	}
	return fmt.Sprintf("ImageType(%d)", int(t))
}

// Image is one discovered extension image.
type Image struct {
	// Name is the image name: the entry name without ".raw" and the
	// optional ".sysext"/".confext" class suffix (for a ".v" directory, the
	// name before "_VERSION"). It names the image in the "confexts" file,
	// the origin record and the staging mount.
	Name string
	// Type is directory, raw or block.
	Type ImageType
	// Path is the fully resolved absolute path inside the root (every
	// symlink followed inside the root; for ".v" directories the picked
	// entry): what systemd records as "path" in the origin record.
	Path string
	// SearchDir is the search path it was found in, as configured
	// ("/var/lib/confexts"); Entry is the directory entry name there
	// ("foo.raw", "foo.raw.v").
	SearchDir, Entry string
	// Version is the version the ".v" pick chose, "" otherwise.
	Version string
}

// FileName is the last element of Path, which systemd prints in "Using
// extensions ..." (it includes the version of a ".v" pick).
func (i Image) FileName() string { return path.Base(i.Path) }

// SkippedEntry is a search directory entry that is not an image, with the
// reason. Problem marks an entry that could not be examined (an I/O or
// permission error, a symlink loop): an image may be missing because of it,
// so the engine logs it as a warning; the others (a temp file, a name
// without .raw, a shadowed name) are expected and logged at debug level.
type SkippedEntry struct {
	Path    string
	Reason  string
	Problem bool
}

// IsInitrd reports whether /etc/initrd-release exists inside the root
// (systemd checks it inside --root), which selects the initrd search paths
// and the "initrd" scope.
func IsInitrd(root *rootfs.Root) (bool, error) {
	ok, err := sysx.IsInitrd(root.Fd())
	if err != nil {
		return false, &os.PathError{Op: "stat", Path: path.Join(root.Path(), sysx.InitrdRelease), Err: err}
	}
	return ok, nil
}

// Discover lists the class's images inside root like systemd's
// image_discover(), sorted by name with vpick.StrverscmpImproved (the
// order of the "extensions"/"confexts" file; the last one ends up on top).
// See DiscoverAll for the rules.
func Discover(root *rootfs.Root, c *config.Class, initrd bool) ([]Image, error) {
	imgs, _, err := DiscoverAll(root, c, initrd)
	return imgs, err
}

// DiscoverAll is Discover that also returns the entries it skipped and why.
//
// Rules (systemd 262 image_discover() and image_make()):
//   - search directories in order; the first directory holding a name wins;
//     a missing directory is skipped; entries are taken in directory order;
//   - entries starting with ".sysupdate." are skipped; every entry is
//     followed through symlinks inside the root only (a dangling one is
//     skipped) and Path is the resolved target;
//   - a regular file must be named "*.raw" and its resolved target must end
//     in ".raw" too: name = entry minus ".raw" minus an optional
//     ".<class>" suffix;
//   - a directory "*.v" is a versioned directory (systemd.v(7)): the entry
//     minus ".v", then minus ".raw" (pick regular files or block devices) or
//     nothing (pick directories), then minus ".<class>", gives the name;
//     vpick picks NAME_VERSION[_ARCH][+LEFT[-DONE]]SUFFIX; an empty ".v" or
//     a pick of the wrong type is skipped;
//   - "*.mstack" directories are skipped (systemd's merge cannot use them);
//   - another directory: name = entry minus an optional ".<class>";
//   - a block device: name = entry;
//   - names must pass ImageNameIsValid.
//
// Deliberate difference: where systemd aborts the whole discovery on an
// unexpected error for one entry or search directory (ELOOP, EACCES, a
// search path that is a file), we skip that entry or directory and report
// it, so one bad entry cannot keep /etc from getting its other images.
func DiscoverAll(root *rootfs.Root, c *config.Class, initrd bool) ([]Image, []SkippedEntry, error) {
	d := discoverer{root: root, c: c, seen: map[string]bool{}}
	for _, s := range c.SearchPathsFor(initrd) {
		if err := d.searchDir(s); err != nil {
			return nil, d.skipped, err
		}
	}
	sort.SliceStable(d.images, func(i, j int) bool {
		return vpick.StrverscmpImproved(d.images[i].Name, d.images[j].Name) < 0
	})
	return d.images, d.skipped, nil
}

type discoverer struct {
	root    *rootfs.Root
	c       *config.Class
	seen    map[string]bool
	images  []Image
	skipped []SkippedEntry
}

func (d *discoverer) skip(p, format string, args ...any) {
	d.skipped = append(d.skipped, SkippedEntry{Path: p, Reason: fmt.Sprintf(format, args...)})
}

// problem is skip for an entry that could not be examined.
func (d *discoverer) problem(p, format string, args ...any) {
	d.skipped = append(d.skipped, SkippedEntry{Path: p, Reason: fmt.Sprintf(format, args...), Problem: true})
}

func (d *discoverer) searchDir(s string) error {
	resolved, err := d.root.Resolve(s)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		d.problem(s, "cannot resolve search directory: %v", err)
		return nil
	}
	dir, err := d.root.Open(resolved, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		d.problem(s, "cannot open search directory: %v", err)
		return nil
	}
	ents, err := dir.ReadDir(-1) // directory order, as readdir(3) gives systemd
	dir.Close()
	if err != nil {
		d.problem(s, "cannot read search directory: %v", err)
		return nil
	}
	for _, e := range ents {
		if err := d.entry(s, resolved, e.Name()); err != nil {
			return err
		}
	}
	return nil
}

// classSuffix is ".sysext" or ".confext".
func (d *discoverer) classSuffix() string { return "." + d.c.Name }

func (d *discoverer) entry(searchDir, resolvedDir, fname string) error {
	p := path.Join(resolvedDir, fname)
	if strings.HasPrefix(fname, ".sysupdate.") {
		d.skip(p, "sysupdate temporary file")
		return nil
	}
	target, err := d.root.Resolve(p)
	if errors.Is(err, fs.ErrNotExist) {
		d.skip(p, "dangling symlink")
		return nil
	}
	if err != nil {
		d.problem(p, "cannot resolve inside the root: %v", err)
		return nil
	}
	st, err := d.root.Lstat(target)
	if err != nil {
		d.problem(p, "cannot stat %s: %v", target, err)
		return nil
	}
	img := Image{SearchDir: searchDir, Entry: fname, Path: target}
	var name string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		stem, ok := strings.CutSuffix(fname, ".raw")
		if !ok {
			d.skip(p, "regular file without .raw suffix")
			return nil
		}
		name = strings.TrimSuffix(stem, d.classSuffix())
		if !strings.HasSuffix(target, ".raw") {
			d.skip(p, "resolves to %s, which does not end in .raw", target)
			return nil
		}
		img.Type = ImageRaw
	case unix.S_IFDIR:
		if nov, ok := strings.CutSuffix(fname, ".v"); ok {
			return d.versioned(img, p, nov)
		}
		if strings.HasSuffix(fname, ".mstack") || strings.HasSuffix(target, ".mstack") {
			d.skip(p, ".mstack images are not supported by sysext/confext merges")
			return nil
		}
		name = strings.TrimSuffix(fname, d.classSuffix())
		img.Type = ImageDirectory
	case unix.S_IFBLK:
		name = fname
		img.Type = ImageBlock
	default:
		d.problem(p, "neither regular file, directory nor block device")
		return nil
	}
	img.Name = name
	d.add(img, p)
	return nil
}

func (d *discoverer) add(img Image, p string) {
	if !ImageNameIsValid(img.Name) {
		d.problem(p, "invalid image name %q", img.Name)
		return
	}
	if d.seen[img.Name] {
		d.skip(p, "image %q already found in a directory of higher precedence", img.Name)
		return
	}
	d.seen[img.Name] = true
	d.images = append(d.images, img)
}

// versioned handles NAME[.class][.raw].v directories.
func (d *discoverer) versioned(img Image, p, nov string) error {
	suffix := ""
	stem := nov
	switch {
	case strings.HasSuffix(nov, ".raw"):
		suffix, stem = ".raw", strings.TrimSuffix(nov, ".raw")
	case strings.HasSuffix(nov, ".mstack"):
		d.skip(p, ".mstack images are not supported by sysext/confext merges")
		return nil
	}
	if s, ok := strings.CutSuffix(stem, d.classSuffix()); ok {
		stem, suffix = s, d.classSuffix()+suffix
	}
	if !ImageNameIsValid(stem) {
		d.problem(p, "invalid image name %q", stem)
		return nil
	}
	if d.seen[stem] {
		d.skip(p, "image %q already found in a directory of higher precedence", stem)
		return nil
	}
	dir, err := d.root.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		d.problem(p, "cannot open versioned directory: %v", err)
		return nil
	}
	r, ok, err := vpick.Pick(dir, vpick.Filter{Basename: stem, Suffix: suffix})
	dir.Close()
	if err != nil {
		d.problem(p, "%v", err)
		return nil
	}
	if !ok {
		d.skip(p, "versioned directory without a matching %s_VERSION%s entry", stem, suffix)
		return nil
	}
	picked := path.Join(p, r.Name)
	target, err := d.root.Resolve(picked)
	if err != nil {
		d.problem(picked, "cannot resolve picked entry: %v", err)
		return nil
	}
	st, err := d.root.Lstat(target)
	if err != nil {
		d.problem(picked, "cannot stat picked entry: %v", err)
		return nil
	}
	ft := st.Mode & unix.S_IFMT
	wantFile := strings.HasSuffix(suffix, ".raw")
	switch {
	case wantFile && ft == unix.S_IFREG && strings.HasSuffix(target, ".raw"):
		img.Type = ImageRaw
	case wantFile && ft == unix.S_IFBLK:
		img.Type = ImageBlock
	case !wantFile && ft == unix.S_IFDIR && !strings.HasSuffix(target, ".mstack"):
		img.Type = ImageDirectory
	default:
		d.skip(picked, "picked entry has the wrong type (mode %#o) for a %q versioned directory", st.Mode, suffix)
		return nil
	}
	img.Name, img.Path, img.Version = stem, target, r.Version
	d.add(img, p)
	return nil
}

// OpenImage opens the discovered image itself inside the root as an O_PATH
// handle (not following a final symlink: Path is already resolved), for
// identity and mounting.
func OpenImage(root *rootfs.Root, img Image) (*os.File, error) {
	return root.OpenPath(img.Path)
}

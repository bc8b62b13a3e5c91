package discover

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// StrictXattr is the extended attribute that lets an image author allow
// (value false) or forbid (true, or absent) a release file whose name does
// not match the image name.
const StrictXattr = "user.extension-release.strict"

// ErrReleaseNotUnique is systemd's -ENOTUNIQ: the fallback search found
// more than one acceptable release file.
var ErrReleaseNotUnique = errors.New("more than one extension-release file matches")

// ImageNameIsValid reports whether s may be an image name, as systemd's
// image_name_is_valid(): a valid file name (not empty, ".", "..", no '/',
// at most 255 bytes), no control characters, valid UTF-8, and not starting
// with ".#" (temporary files).
func ImageNameIsValid(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 255 || strings.ContainsRune(s, '/') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s) && !strings.HasPrefix(s, ".#")
}

// ReleaseBaseName is the name a release file may carry when it is not the
// exact image name, as systemd's path_extract_image_name(): ".sysext.raw",
// ".confext.raw" or ".raw" removed, then everything from the first '_' or
// '+' (version, tries counter) cut off: "foo_1.2+3.raw" -> "foo".
func ReleaseBaseName(name string) string {
	for _, s := range []string{".sysext.raw", ".confext.raw", ".raw"} {
		if n, ok := strings.CutSuffix(name, s); ok {
			name = n
			break
		}
	}
	if i := strings.IndexAny(name, "_+"); i >= 0 {
		name = name[:i]
	}
	return name
}

// ReleaseFile is an extension-release file read from an image.
type ReleaseFile struct {
	// Path is the file's path inside the image.
	Path string
	// Fields are its assignments.
	Fields map[string]string
	// Issues are lines systemd ignores, for logging.
	Issues []release.Issue
}

// ReadReleaseFile finds and parses the extension-release file of image
// name inside tree (the image's root directory, opened by the caller),
// following systemd's open_extension_release_at():
//
//   - <ReleaseDir>/extension-release.NAME, symlinks resolved inside the
//     image;
//   - if that does not exist, every regular file extension-release.SUFFIX
//     in <ReleaseDir> with a valid SUFFIX is a candidate; unless relax is
//     set (systemd relaxes only when reading back merged trees) a candidate
//     counts only if SUFFIX equals ReleaseBaseName(name) or the file
//     carries user.extension-release.strict=false; two candidates are
//     ErrReleaseNotUnique.
//
// No path is ever joined onto a host path: everything is opened relative
// to tree with RESOLVE_IN_ROOT. A missing file is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func ReadReleaseFile(tree *os.File, c *config.Class, name string, relax bool) (ReleaseFile, error) {
	f, p, err := OpenReleaseFile(tree, c, name, relax)
	if err != nil {
		return ReleaseFile{Path: p}, err
	}
	defer f.Close()
	fields, issues, err := release.ParseDetailed(f, p)
	if err != nil {
		return ReleaseFile{Path: p}, err
	}
	return ReleaseFile{Path: p, Fields: fields, Issues: issues}, nil
}

// OpenReleaseFile is ReadReleaseFile without the parsing: it returns the
// opened file and its path inside the image.
func OpenReleaseFile(tree *os.File, c *config.Class, name string, relax bool) (*os.File, string, error) {
	if !ImageNameIsValid(name) {
		return nil, "", fmt.Errorf("extension name %q is invalid: %w", name, unix.EINVAL)
	}
	exact := c.ReleaseDir + "/extension-release." + name
	f, err := rootfs.OpenRegular(tree, exact, rootfs.FollowInRoot)
	if err == nil {
		return f, exact, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return nil, exact, err
	}

	dir, err := rootfs.OpenIn(tree, c.ReleaseDir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, exact, err
	}
	defer dir.Close()
	ents, err := dir.ReadDir(-1)
	if err != nil {
		return nil, exact, fmt.Errorf("read %s in image: %w", c.ReleaseDir, err)
	}
	base := ReleaseBaseName(name)
	var found *os.File
	var foundName string
	for _, e := range ents {
		suffix, ok := strings.CutPrefix(e.Name(), "extension-release.")
		if !ok || !ImageNameIsValid(suffix) {
			continue
		}
		if t := e.Type(); t != 0 && !t.IsRegular() {
			continue
		}
		// Only regular files count: a link, FIFO or device is passed
		// over (the bounded reader refuses it without reading).
		cf, err := rootfs.OpenRegular(dir, e.Name(), rootfs.NoFollow)
		var notRegular *rootfs.FileRuleError
		if err != nil {
			if errors.As(err, &notRegular) || errors.Is(err, unix.ENOENT) {
				continue
			}
			if found != nil {
				found.Close()
			}
			return nil, exact, err
		}
		if !relax && suffix != base {
			if strict, err := strictXattr(cf); err != nil || strict {
				cf.Close()
				continue
			}
		}
		if found != nil {
			found.Close()
			cf.Close()
			return nil, exact, fmt.Errorf("%s in image: %s and %s: %w", c.ReleaseDir, foundName, e.Name(), ErrReleaseNotUnique)
		}
		found, foundName = cf, e.Name()
	}
	if found == nil {
		return nil, exact, &os.PathError{Op: "open", Path: exact, Err: unix.ENOENT}
	}
	return found, c.ReleaseDir + "/" + foundName, nil
}

// strictXattr reads user.extension-release.strict as systemd's
// getxattr_at_bool(): a missing attribute, an embedded NUL or an
// unparsable value is an error (the candidate is skipped).
func strictXattr(f *os.File) (bool, error) {
	buf := make([]byte, 256)
	n, err := unix.Fgetxattr(int(f.Fd()), StrictXattr, buf)
	if err != nil {
		return false, err
	}
	v := string(buf[:n])
	if strings.IndexByte(v, 0) >= 0 {
		return false, unix.EINVAL
	}
	b, ok := kcmdline.ParseBool(v)
	if !ok {
		return false, unix.EINVAL
	}
	return b, nil
}

// HasForbiddenContent reports whether a sysext image tree contains
// /usr/lib/os-release, which systemd refuses (it would replace the host's
// OS identity); confext images may carry anything. A dangling symlink does
// not count, like systemd's chase().
func HasForbiddenContent(tree *os.File, c *config.Class) (bool, error) {
	if c.Name != config.Sysext.Name {
		return false, nil
	}
	f, err := rootfs.OpenIn(tree, "/usr/lib/os-release", unix.O_PATH)
	if err == nil {
		f.Close()
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return false, err
}

// LoadHostRelease reads the host os-release inside root (see
// release.LoadHost), honouring $SYSTEMD_OS_RELEASE from getenv (nil means
// os.Getenv) like systemd.
func LoadHostRelease(root *rootfs.Root, getenv func(string) string) (release.Host, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	open := func(p string) (*os.File, error) { return root.OpenRegular(p, rootfs.FollowInRoot) }
	return release.LoadHost(open, getenv("SYSTEMD_OS_RELEASE"))
}

package release

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// HostPaths are where os-release lives in a root, in systemd's order: the
// first one that exists is used, even if it lacks fields.
var HostPaths = []string{"/etc/os-release", "/usr/lib/os-release"}

// Host holds the os-release values of the tree extensions are merged into.
type Host struct {
	// Path is the in-root path the values were read from.
	Path string
	// ID, IDLike (ID_LIKE split on whitespace) and VersionID are the
	// fields validation compares against.
	ID        string
	IDLike    []string
	VersionID string
	// SysextLevel and ConfextLevel are SYSEXT_LEVEL and CONFEXT_LEVEL.
	SysextLevel, ConfextLevel string
	// Fields holds every assignment, so that the class's level key
	// (SYSEXT_LEVEL, CONFEXT_LEVEL) and anything else can be looked up.
	Fields map[string]string
}

// Level returns the host's API level for the class level key (for example
// "CONFEXT_LEVEL"), "" if unset.
func (h Host) Level(levelKey string) string { return h.Fields[levelKey] }

// Opener opens a file inside the target root for reading, resolving the
// path inside that root (symlinks included) and returning an error that
// satisfies errors.Is(err, fs.ErrNotExist) when it is missing. A
// *rootfs.Root's read-only open, or os.Open for tests, fits.
type Opener func(path string) (*os.File, error)

// LoadHost reads the host os-release inside a root: /etc/os-release, else
// /usr/lib/os-release. If override is not empty (systemd's
// $SYSTEMD_OS_RELEASE) only that path is tried. An empty ID is an error
// because systemd refuses to merge anything then.
func LoadHost(open Opener, override string) (Host, error) {
	paths := HostPaths
	if override != "" {
		paths = []string{override}
	}
	var lastErr error
	for _, p := range paths {
		f, err := open(p)
		if errors.Is(err, fs.ErrNotExist) {
			lastErr = err
			continue
		}
		if err != nil {
			return Host{}, fmt.Errorf("open host os-release %s: %w", p, err)
		}
		fields, err := Parse(f, p)
		f.Close()
		if err != nil {
			return Host{}, err
		}
		h := HostFromFields(fields)
		h.Path = p
		if h.ID == "" {
			return h, fmt.Errorf("%s: ID field not found or empty, refusing to merge extensions", p)
		}
		return h, nil
	}
	return Host{}, fmt.Errorf("no os-release found in root (tried %s): %w", strings.Join(paths, ", "), lastErr)
}

// HostFromFields builds a Host from parsed os-release fields.
func HostFromFields(fields map[string]string) Host {
	if fields == nil {
		fields = map[string]string{}
	}
	return Host{
		ID:           fields["ID"],
		IDLike:       strings.Fields(fields["ID_LIKE"]),
		VersionID:    fields["VERSION_ID"],
		SysextLevel:  fields["SYSEXT_LEVEL"],
		ConfextLevel: fields["CONFEXT_LEVEL"],
		Fields:       fields,
	}
}

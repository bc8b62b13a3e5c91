package fetch

import (
	"fmt"

	"github.com/ext-setup-root/ext-setup-root/release"
)

// targetFor is the target of a fetch for version: the booted root's
// os-release, with the version taken from the selection. When version is
// not the root's own (a fetch before an update, --os-version), the image
// must carry VERSION_ID=version (Flatcar's VERSION and VERSION_ID are the
// same string).
func (c *Config) targetFor(host release.Host, version string) Target {
	t := Target{ID: host.ID, Version: version, VersionID: host.VersionID, SysextLevel: host.SysextLevel,
		Board: host.Fields[c.BoardKey], Architecture: release.UnameArchitecture()}
	if version != host.VersionID && version != host.Fields["VERSION"] {
		t.VersionID, t.SysextLevel = version, ""
	}
	t.Arch = t.Board
	if n := len(t.Arch); n > 4 && t.Arch[n-4:] == "-usr" {
		t.Arch = t.Arch[:n-4]
	}
	return t
}

// hostFor is the os-release the image is validated against like a merge
// would: the root's, with the target's VERSION_ID.
func hostFor(host release.Host, t Target) release.Host {
	h := host
	h.Fields = make(map[string]string, len(host.Fields)+1)
	for k, v := range host.Fields {
		h.Fields[k] = v
	}
	h.VersionID, h.Fields["VERSION_ID"] = t.VersionID, t.VersionID
	if t.SysextLevel == "" {
		h.SysextLevel = ""
		delete(h.Fields, "SYSEXT_LEVEL")
	}
	return h
}

// matchRelease checks that an image's extension-release names what was
// asked for, more strictly than a merge (which accepts ID=_any and a
// missing version when a level matches): nothing in a payload binds it to
// a name or version, so a validly signed image of another version or OS
// served under this URL must be refused here. The name was checked when
// the release file extension-release.NAME was found.
func matchRelease(f map[string]string, t Target, file string) error {
	if f["ID"] != t.ID {
		return fmt.Errorf("%s: extension-release ID=%q, the target OS is %q", file, f["ID"], t.ID)
	}
	if t.SysextLevel != "" {
		if f["SYSEXT_LEVEL"] != t.SysextLevel {
			return fmt.Errorf("%s: extension-release SYSEXT_LEVEL=%q, the target has %q", file, f["SYSEXT_LEVEL"], t.SysextLevel)
		}
	} else if f["VERSION_ID"] != t.VersionID {
		return fmt.Errorf("%s: extension-release VERSION_ID=%q, the image was fetched for %q", file, f["VERSION_ID"], t.VersionID)
	}
	if a := f["ARCHITECTURE"]; a != "" && a != t.Architecture {
		return fmt.Errorf("%s: extension-release ARCHITECTURE=%q, this machine is %q", file, a, t.Architecture)
	}
	return nil
}

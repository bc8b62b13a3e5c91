package release

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Options carries the class- and host-specific inputs of Validate.
type Options struct {
	// ScopeKey and LevelKey name the class fields: SYSEXT_SCOPE and
	// SYSEXT_LEVEL, or CONFEXT_SCOPE and CONFEXT_LEVEL.
	ScopeKey, LevelKey string
	// Scope is the host scope: "initrd" when /etc/initrd-release exists in
	// the root, else "system". Empty skips the scope check.
	Scope string
	// Arch is systemd's architecture name of the running kernel
	// ("x86-64", "arm64", ...); UnameArchitecture() gives it.
	Arch string
}

// ErrNoHostID is returned when the host has no ID; systemd aborts the
// whole merge in that case rather than skipping images.
var ErrNoHostID = errors.New("host os-release has no ID")

// defaultScopes apply when an extension does not set its scope key.
var defaultScopes = []string{"system", "portable"}

// Validate decides whether an extension's release fields (ext) fit the
// host, with the rules of systemd's extension_release_validate(), in its
// order:
//
//  1. no release data: not accepted;
//  2. the scope key (whitespace list, default "system portable", an empty
//     value matches nothing) must contain opts.Scope;
//  3. ARCHITECTURE, if set and not "_any", must equal opts.Arch;
//  4. ID must be set; "_any" accepts without version checks; otherwise it
//     must equal the host ID or be listed in the host ID_LIKE;
//  5. a host with neither VERSION_ID nor the level key accepts;
//  6. if both host and extension set the level key they must be equal;
//     else if the host has VERSION_ID the extension's must equal it.
//
// ok=false comes with a reason naming the field and both values; err is
// set only for ErrNoHostID.
func Validate(ext map[string]string, host Host, opts Options) (ok bool, reason string, err error) {
	if host.ID == "" {
		return false, "", ErrNoHostID
	}
	if len(ext) == 0 {
		return false, "extension carries no release data", nil
	}

	if opts.Scope != "" && opts.ScopeKey != "" {
		scopes := defaultScopes
		if v, set := ext[opts.ScopeKey]; set {
			scopes = strings.Fields(v)
		}
		if !slices.Contains(scopes, opts.Scope) {
			return false, fmt.Sprintf("%s %q does not include host scope %q", opts.ScopeKey, strings.Join(scopes, " "), opts.Scope), nil
		}
	}

	if a := ext["ARCHITECTURE"]; a != "" && a != "_any" && a != opts.Arch {
		return false, fmt.Sprintf("ARCHITECTURE %q does not match host architecture %q", a, opts.Arch), nil
	}

	id := ext["ID"]
	if id == "" {
		return false, fmt.Sprintf("ID is missing or empty (host ID %q; use ID=_any to match any OS)", host.ID), nil
	}
	if id == "_any" {
		return true, "", nil
	}
	if id != host.ID && !slices.Contains(host.IDLike, id) {
		if len(host.IDLike) > 0 {
			return false, fmt.Sprintf("ID %q does not match host ID %q or ID_LIKE %q", id, host.ID, strings.Join(host.IDLike, " ")), nil
		}
		return false, fmt.Sprintf("ID %q does not match host ID %q", id, host.ID), nil
	}

	hostLevel := host.Level(opts.LevelKey)
	if host.VersionID == "" && hostLevel == "" {
		return true, "", nil
	}
	if extLevel := ext[opts.LevelKey]; hostLevel != "" && extLevel != "" {
		if extLevel != hostLevel {
			return false, fmt.Sprintf("%s %q does not match host %s %q", opts.LevelKey, extLevel, opts.LevelKey, hostLevel), nil
		}
		return true, "", nil
	}
	if host.VersionID != "" {
		v := ext["VERSION_ID"]
		if v == "" {
			return false, fmt.Sprintf("VERSION_ID is missing but host VERSION_ID is %q (and no %s on both sides)", host.VersionID, opts.LevelKey), nil
		}
		if v != host.VersionID {
			return false, fmt.Sprintf("VERSION_ID %q does not match host VERSION_ID %q", v, host.VersionID), nil
		}
	}
	return true, "", nil
}

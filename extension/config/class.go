// Package config describes what each extension class is and how it is
// configured: the Class values (Sysext, Confext) with their hierarchies and
// search paths, systemd's <class>.conf files (LoadConfig, ParseINI) and the
// mutable mode with its resolution order (ResolveMutableMode). It reads
// configuration only; discovery, records and the merge build on it.
package config

import (
	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/release"
)

// Class describes one extension class. The two values are Sysext and
// Confext; everything class-specific is looked up here so that the engine has
// no `if confext` branches.
type Class struct {
	// Name is "sysext" or "confext" (also the overlay's mount source).
	Name string
	// Plural names the metadata file listing merged images: "extensions"
	// or "confexts".
	Plural string
	// DotDir is the metadata directory inside the merged hierarchy.
	DotDir string
	// Hierarchies are the merge targets, as absolute paths in the root.
	Hierarchies []string
	// HierarchiesEnv overrides Hierarchies (colon-separated), as systemd does.
	HierarchiesEnv string
	// SearchPaths are the image directories, highest precedence first.
	SearchPaths []string
	// InitrdSearchPaths replace SearchPaths when /etc/initrd-release exists
	// in the root.
	InitrdSearchPaths []string
	// ReleaseDir is where an image keeps extension-release.NAME.
	ReleaseDir string
	// ScopeKey, LevelKey name the release fields for scope and API level.
	ScopeKey, LevelKey string
	// MutableEnv, OverlayOptionsEnv are systemd's environment variables for
	// the mutable mode and overlay mount options.
	MutableEnv, OverlayOptionsEnv string
	// ConfigName is the config file under systemd/ (sysext.conf) and
	// ConfigSection its section ([SysExt]).
	ConfigName, ConfigSection string
	// MountAttrs are the overlay's mount attributes (MOUNT_ATTR_*), before
	// --noexec and mutability adjust them.
	MountAttrs uint64
	// KernelCmdlineKey is systemd.<class>= (with --root) that can disable
	// the class at boot.
	KernelCmdlineKey string
}

// Sysext is the class of system extensions, merged over /usr and /opt.
var Sysext = &Class{
	Name:              "sysext",
	Plural:            "extensions",
	DotDir:            ".systemd-sysext",
	Hierarchies:       []string{"/usr", "/opt"},
	HierarchiesEnv:    "SYSTEMD_SYSEXT_HIERARCHIES",
	SearchPaths:       []string{"/etc/extensions", "/run/extensions", "/var/lib/extensions"},
	InitrdSearchPaths: []string{"/etc/extensions", "/run/extensions", "/var/lib/extensions", "/.extra/sysext", "/.extra/global_sysext"},
	ReleaseDir:        "/usr/lib/extension-release.d",
	ScopeKey:          "SYSEXT_SCOPE",
	LevelKey:          "SYSEXT_LEVEL",
	MutableEnv:        "SYSTEMD_SYSEXT_MUTABLE_MODE",
	OverlayOptionsEnv: "SYSTEMD_SYSEXT_OVERLAYFS_MOUNT_OPTIONS",
	ConfigName:        "sysext.conf",
	ConfigSection:     "SysExt",
	MountAttrs:        unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV,
	KernelCmdlineKey:  "systemd.sysext",
}

// Confext is the class of configuration extensions, merged over /etc.
var Confext = &Class{
	Name:              "confext",
	Plural:            "confexts",
	DotDir:            ".systemd-confext",
	Hierarchies:       []string{"/etc"},
	HierarchiesEnv:    "SYSTEMD_CONFEXT_HIERARCHIES",
	SearchPaths:       []string{"/run/confexts", "/var/lib/confexts", "/usr/local/lib/confexts", "/usr/lib/confexts"},
	InitrdSearchPaths: []string{"/run/confexts", "/var/lib/confexts", "/usr/local/lib/confexts", "/.extra/confext", "/.extra/global_confext"},
	ReleaseDir:        "/etc/extension-release.d",
	ScopeKey:          "CONFEXT_SCOPE",
	LevelKey:          "CONFEXT_LEVEL",
	MutableEnv:        "SYSTEMD_CONFEXT_MUTABLE_MODE",
	OverlayOptionsEnv: "SYSTEMD_CONFEXT_OVERLAYFS_MOUNT_OPTIONS",
	ConfigName:        "confext.conf",
	ConfigSection:     "ConfExt",
	MountAttrs:        unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NOEXEC,
	KernelCmdlineKey:  "systemd.confext",
}

// SearchPathsFor returns the class's image directories for an initrd or a
// booted system, highest precedence first: the initrd has its own list
// (systemd's initrd search paths) when the class defines one.
func (c *Class) SearchPathsFor(initrd bool) []string {
	if initrd && len(c.InitrdSearchPaths) > 0 {
		return c.InitrdSearchPaths
	}
	return c.SearchPaths
}

// ReleaseOptions returns the validation options for this class: its scope
// and level keys, the host scope ("initrd" when the root is an initrd,
// else "system") and the running kernel's architecture.
func (c *Class) ReleaseOptions(initrd bool) release.Options {
	scope := "system"
	if initrd {
		scope = "initrd"
	}
	return release.Options{ScopeKey: c.ScopeKey, LevelKey: c.LevelKey, Scope: scope, Arch: release.UnameArchitecture()}
}

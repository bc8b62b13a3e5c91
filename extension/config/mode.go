package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
)

// MutableMode is systemd's --mutable= mode: whether and how the merged
// hierarchy gets a writable upper layer (systemd-sysext(8)).
type MutableMode int

// The modes, in systemd's table order. MutableNo is the default.
const (
	// MutableNo mounts the merge read-only, with no upper dir.
	MutableNo MutableMode = iota
	// MutableYes creates /var/lib/extensions.mutable/<h> if needed and
	// uses it as the upper dir.
	MutableYes
	// MutableAuto uses the mutable dir as upper dir only if it exists.
	MutableAuto
	// MutableImport adds an existing mutable dir as a read-only layer.
	MutableImport
	// MutableEphemeral uses a tmpfs upper dir whose changes are lost.
	MutableEphemeral
	// MutableEphemeralImport is ephemeral plus the mutable dir imported as
	// a read-only layer.
	MutableEphemeralImport
)

var mutableModeNames = [...]string{"no", "yes", "auto", "import", "ephemeral", "ephemeral-import"}

// String returns the mode as systemd spells it (and writes it into the
// origin record's "mutable.mode").
func (m MutableMode) String() string {
	if m < 0 || int(m) >= len(mutableModeNames) {
		return fmt.Sprintf("MutableMode(%d)", int(m))
	}
	return mutableModeNames[m]
}

// MutableModeNames lists the accepted mode names, for --mutable=help.
func MutableModeNames() []string { return append([]string(nil), mutableModeNames[:]...) }

// ErrMutableHelp is returned by ParseMutableMode for "help", so that the
// CLI prints MutableModeNames and exits successfully, as systemd does.
var ErrMutableHelp = errors.New("mutable mode help requested")

// ParseMutableMode parses a mode name. Like systemd's
// DEFINE_STRING_TABLE_LOOKUP_WITH_BOOLEAN it first accepts booleans
// (1/yes/y/true/t/on mean "yes", 0/no/n/false/f/off mean "no", any case),
// then the exact mode names.
func ParseMutableMode(s string) (MutableMode, error) {
	if s == "help" {
		return MutableNo, ErrMutableHelp
	}
	if b, ok := kcmdline.ParseBool(s); ok {
		if b {
			return MutableYes, nil
		}
		return MutableNo, nil
	}
	for i, n := range mutableModeNames {
		if s == n {
			return MutableMode(i), nil
		}
	}
	return MutableNo, fmt.Errorf("invalid mutable mode %q (valid: %s)", s, strings.Join(mutableModeNames[:], ", "))
}

// ModeSource says where the effective mutable mode came from.
type ModeSource string

// Mode sources, highest precedence first.
const (
	ModeFromCLI     ModeSource = "command line"
	ModeFromEnv     ModeSource = "environment"
	ModeFromConfig  ModeSource = "config"
	ModeFromDefault ModeSource = "default"
)

// ResolveMutableMode applies systemd's precedence: the command line (cli,
// if cliSet), else the class's environment variable (c.MutableEnv; an
// invalid value is ignored with a warning, as systemd does), else Mutable=
// from the configuration (cfg, see LoadConfig), else "no". An invalid
// command line value is an error.
func ResolveMutableMode(c *Class, cli string, cliSet bool, getenv func(string) string, cfg Config) (MutableMode, ModeSource, []string, error) {
	var warnings []string
	if cliSet {
		m, err := ParseMutableMode(cli)
		if err != nil {
			return MutableNo, ModeFromCLI, nil, fmt.Errorf("--mutable: %w", err)
		}
		return m, ModeFromCLI, nil, nil
	}
	if getenv != nil && c.MutableEnv != "" {
		if v := getenv(c.MutableEnv); v != "" {
			m, err := ParseMutableMode(v)
			if err == nil {
				return m, ModeFromEnv, nil, nil
			}
			warnings = append(warnings, fmt.Sprintf("ignoring %s=%q: %v", c.MutableEnv, v, err))
		}
	}
	if cfg.Mutable != nil {
		return *cfg.Mutable, ModeFromConfig, warnings, nil
	}
	return MutableNo, ModeFromDefault, warnings, nil
}

// MutableBaseDir holds the persistent upper dirs, inside the target root.
const MutableBaseDir = "/var/lib/extensions.mutable"

// HierarchyDirName turns a hierarchy into one path component as systemd's
// hierarchy_as_single_path_component(): leading and trailing slashes
// removed, inner slashes turned into dots ("/etc" -> "etc",
// "/foo/bar/" -> "foo.bar").
func HierarchyDirName(hierarchy string) string {
	return strings.ReplaceAll(strings.TrimRight(strings.TrimLeft(hierarchy, "/"), "/"), "/", ".")
}

// MutableDir is the in-root mutable dir of a hierarchy,
// /var/lib/extensions.mutable/<h>. It may be a symlink to the hierarchy
// itself (then the hierarchy is the upper dir).
func MutableDir(hierarchy string) string {
	return MutableBaseDir + "/" + HierarchyDirName(hierarchy)
}

// WorkDirName is the overlay work dir's name, created next to the upper
// dir: ".systemd-<h>-workdir".
func WorkDirName(hierarchy string) string {
	return ".systemd-" + HierarchyDirName(hierarchy) + "-workdir"
}

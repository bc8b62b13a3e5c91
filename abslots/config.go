package abslots

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/BurntSushi/toml"
)

// defaultTOML is the Flatcar layout; it is decoded first so that every
// other config file only states what it changes.
//
//go:embed default.toml
var defaultTOML []byte

// DefaultTOML returns the embedded default layout (Flatcar), for docs and
// `plan --json` consumers that want to see what was assumed.
func DefaultTOML() []byte { return bytes.Clone(defaultTOML) }

// Config is the on-disk layout abslots manages. All paths are absolute paths
// inside the target root; patterns expand {OEMID}, {VERSION} and {NAME}.
type Config struct {
	OSRelease  string    `toml:"os_release" json:"os_release"`
	VersionKey string    `toml:"version_key" json:"version_key"`
	LinkDir    string    `toml:"link_dir" json:"link_dir"`
	OEM        OEMConfig `toml:"oem" json:"oem"`
	Extensions ExtConfig `toml:"extensions" json:"extensions"`
	Switches   Switches  `toml:"-" json:"switches"`
	Sources    []string  `toml:"-" json:"sources"`
}

// OEMConfig describes the vendor (OEM) image: one per machine, chosen by the
// OEM ID, moved between stores.
type OEMConfig struct {
	Enabled          bool              `toml:"enabled" json:"enabled"`
	ReleaseFile      string            `toml:"release_file" json:"release_file"`
	IDKey            string            `toml:"id_key" json:"id_key"`
	FlagDir          string            `toml:"flag_dir" json:"flag_dir"`
	ActiveFlag       string            `toml:"active_flag" json:"active_flag"`
	MigrateFlag      string            `toml:"migrate_flag" json:"migrate_flag"`
	Image            string            `toml:"image" json:"image"`
	InitialImage     string            `toml:"initial_image" json:"initial_image"`
	Link             string            `toml:"link" json:"link"`
	Stores           []string          `toml:"stores" json:"stores"`
	Essential        bool              `toml:"essential" json:"essential"`
	MigrationListDir string            `toml:"migration_list_dir" json:"migration_list_dir"`
	MigrationRelink  map[string]string `toml:"migration_relink" json:"migration_relink"`
}

// ExtConfig describes the OS-version-coupled extensions chosen by name from
// the enabled lists.
type ExtConfig struct {
	Enabled      bool     `toml:"enabled" json:"enabled"`
	EnabledLists []string `toml:"enabled_lists" json:"enabled_lists"`
	OptoutLists  []string `toml:"optout_lists" json:"optout_lists"`
	Image        string   `toml:"image" json:"image"`
	Store        string   `toml:"store" json:"store"`
	Link         string   `toml:"link" json:"link"`
	Essential    []string `toml:"essential" json:"essential"`
}

// Switches are the kernel command line switches for abslots.
type Switches struct {
	// Disabled is ext-setup-root.abslots=0: skip the whole selection.
	Disabled bool `json:"disabled"`
	// DryRun is ext-setup-root.dry-run: plan and log, change nothing.
	DryRun bool `json:"dry_run"`
	// Debug is ext-setup-root.debug: debug log lines.
	Debug bool `json:"debug"`
}

// DefaultConfig returns the Flatcar layout. It is built as a Go value
// rather than decoded from default.toml on every run (decoding costs about
// half a millisecond, a large share of a boot-time run);
// TestDefaultConfigMatchesTOML keeps the two identical.
func DefaultConfig() *Config {
	return &Config{
		OSRelease:  "/usr/lib/os-release",
		VersionKey: "VERSION",
		LinkDir:    "/etc/extensions",
		OEM: OEMConfig{
			Enabled:          true,
			ReleaseFile:      "/oem/oem-release",
			IDKey:            "ID",
			FlagDir:          "/oem/sysext",
			ActiveFlag:       "active-oem-{OEMID}",
			MigrateFlag:      "migrate-oem-{OEMID}",
			Image:            "oem-{OEMID}-{VERSION}.raw",
			InitialImage:     "oem-{OEMID}-initial.raw",
			Link:             "oem-{OEMID}.raw",
			Stores:           []string{"/oem/sysext", "/etc/flatcar/oem-sysext"},
			MigrationListDir: "/usr/share/flatcar/oems",
			MigrationRelink: map[string]string{
				"/etc/systemd/system/multi-user.target.wants/oem-cloudinit.service": "/usr/lib/systemd/system/oem-cloudinit.service",
			},
		},
		Extensions: ExtConfig{
			Enabled:      true,
			EnabledLists: []string{"/etc/flatcar/enabled-sysext.conf", "/usr/share/flatcar/enabled-sysext.conf"},
			OptoutLists:  []string{"/etc/flatcar/enabled-sysext.conf"},
			Image:        "flatcar-{NAME}-{VERSION}.raw",
			Store:        "/etc/flatcar/sysext",
			Link:         "flatcar-{NAME}.raw",
			Essential:    []string{},
		},
		Sources: []string{"(built-in default)"},
	}
}

// decodeDefaultTOML decodes the embedded default.toml (tests and docs).
func decodeDefaultTOML() (*Config, error) {
	c := &Config{}
	if _, err := toml.NewDecoder(bytes.NewReader(defaultTOML)).Decode(c); err != nil {
		return nil, err
	}
	c.Sources = []string{"(built-in default)"}
	return c, nil
}

// Decode applies one TOML document on top of c; only keys present in r
// change. name is used in errors.
func (c *Config) Decode(r io.Reader, name string) error {
	md, err := toml.NewDecoder(r).Decode(c)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("%s: unknown keys %s", name, strings.Join(keys, ", "))
	}
	c.Sources = append(c.Sources, name)
	return nil
}

// Validate checks that the layout is usable: absolute clean paths, patterns
// that expand to one file name, a known version key, at least one store.
func (c *Config) Validate() error {
	var errs []string
	abs := func(key, p string) {
		if p == "" || !path.IsAbs(p) || path.Clean(p) != p {
			errs = append(errs, fmt.Sprintf("%s %q must be an absolute clean path", key, p))
		}
	}
	pat := func(key, p string, optional bool) {
		if p == "" && optional {
			return
		}
		probe := expand(p, map[string]string{"OEMID": "x", "VERSION": "1", "NAME": "n"})
		if p == "" || strings.Contains(probe, "/") || probe == "." || probe == ".." || strings.ContainsAny(probe, "{}") {
			errs = append(errs, fmt.Sprintf("%s %q must expand to a single file name", key, p))
		}
	}
	abs("os_release", c.OSRelease)
	abs("link_dir", c.LinkDir)
	switch c.VersionKey {
	case "VERSION", "VERSION_ID", "SYSEXT_LEVEL":
	default:
		errs = append(errs, fmt.Sprintf("version_key %q must be VERSION, VERSION_ID or SYSEXT_LEVEL", c.VersionKey))
	}
	if c.OEM.Enabled {
		abs("oem.release_file", c.OEM.ReleaseFile)
		abs("oem.flag_dir", c.OEM.FlagDir)
		abs("oem.migration_list_dir", c.OEM.MigrationListDir)
		pat("oem.active_flag", c.OEM.ActiveFlag, false)
		pat("oem.migrate_flag", c.OEM.MigrateFlag, false)
		pat("oem.image", c.OEM.Image, false)
		pat("oem.initial_image", c.OEM.InitialImage, true)
		pat("oem.link", c.OEM.Link, false)
		if c.OEM.IDKey == "" {
			errs = append(errs, "oem.id_key must not be empty")
		}
		if len(c.OEM.Stores) == 0 {
			errs = append(errs, "oem.stores needs at least one location")
		}
		for i, s := range c.OEM.Stores {
			abs(fmt.Sprintf("oem.stores[%d]", i), s)
		}
		for k, v := range c.OEM.MigrationRelink {
			abs("oem.migration_relink key", k)
			abs("oem.migration_relink value", v)
		}
	}
	if c.Extensions.Enabled {
		for i, s := range c.Extensions.EnabledLists {
			abs(fmt.Sprintf("extensions.enabled_lists[%d]", i), s)
		}
		for i, s := range c.Extensions.OptoutLists {
			abs(fmt.Sprintf("extensions.optout_lists[%d]", i), s)
		}
		abs("extensions.store", c.Extensions.Store)
		pat("extensions.image", c.Extensions.Image, false)
		pat("extensions.link", c.Extensions.Link, false)
	}
	if len(errs) > 0 {
		return fmt.Errorf("abslots config (%s): %s", strings.Join(c.Sources, ", "), strings.Join(errs, "; "))
	}
	return nil
}

// expand replaces {KEY} placeholders.
func expand(pattern string, vars map[string]string) string {
	for k, v := range vars {
		pattern = strings.ReplaceAll(pattern, "{"+k+"}", v)
	}
	return pattern
}

package prepare

import (
	"fmt"
	"path"
	"strings"
)

// Config selects and configures the duties. The zero value does nothing;
// Default is Flatcar's layout. In boot.toml it is the [prepare] table;
// keys left out keep the default.
type Config struct {
	Enabled   bool            `toml:"enabled"`
	Reset     ResetConfig     `toml:"reset"`
	Whiteouts WhiteoutsConfig `toml:"whiteouts"`
	Tmpfiles  TmpfilesConfig  `toml:"tmpfiles"`
	MachineID MachineIDConfig `toml:"machine_id"`
	Dedup     DedupConfig     `toml:"dedup"`
	OEM       OEMConfig       `toml:"oem"`
}

// ResetConfig is the selective OS reset.
type ResetConfig struct {
	Enabled bool `toml:"enabled"`
	// FlagFile (in the root) holds the regex of the paths to keep; the
	// reset runs when it exists and is not empty.
	FlagFile string `toml:"flag_file"`
	// MaxSize bounds the flag file; a larger one is an error and the
	// reset is not done.
	MaxSize int64 `toml:"max_size"`
	// Protect are paths that are never removed nor entered, besides "/"
	// and the root's mount points (Flatcar's /usr is one).
	Protect []string `toml:"protect"`
	// MachineID is removed after the reset so that the boot is a first
	// boot again ("" keeps it).
	MachineID string `toml:"machine_id"`
}

// WhiteoutsConfig is the whiteout repair.
type WhiteoutsConfig struct {
	Enabled bool `toml:"enabled"`
	// ListFile (in the root, shipped in /usr) lists one absolute path a
	// line whose 0:0 whiteouts are removed.
	ListFile string `toml:"list_file"`
	// Always are paths removed when they are any character device (the
	// user databases, which must be regular files before tmpfiles and
	// Ignition write them).
	Always []string `toml:"always"`
}

// TmpfilesConfig is the early systemd-tmpfiles run.
type TmpfilesConfig struct {
	Enabled bool `toml:"enabled"`
	// Binary is systemd-tmpfiles, looked up in PATH unless absolute: the
	// initrd's own, run with --root (no chroot), as Flatcar does.
	Binary string `toml:"binary"`
	// Configs are tmpfiles.d names passed to --create; those not present
	// in the root's tmpfiles.d directories are left out, and with none
	// left the binary does not run.
	Configs []string `toml:"configs"`
	// Commands run before systemd-tmpfiles when their program exists
	// (first element, in the initrd; "{ROOT}" in an argument is replaced
	// by the root); a missing program is logged.
	Commands [][]string `toml:"commands"`
}

// MachineIDConfig removes the image's placeholder machine-id.
type MachineIDConfig struct {
	Enabled bool   `toml:"enabled"`
	File    string `toml:"file"`
	Blank   string `toml:"blank"`
}

// DedupConfig removes /etc entries identical to the vendor defaults.
type DedupConfig struct {
	Enabled bool `toml:"enabled"`
	// Etc is the directory cleaned, in the root.
	Etc string `toml:"etc"`
	// DefaultsConfext names the vendor's default confext: an entry of
	// /etc goes only when, in the merge that follows, this image is what
	// shows through at its path, identical. "" turns the dedup off in
	// the boot stages.
	DefaultsConfext string `toml:"defaults_confext"`
	// DefaultsDirs are directories in the root holding the vendor
	// defaults, used only by a caller without an extension engine (no
	// Options.Confexts): the first that exists is taken as the one layer
	// below /etc, Flatcar's classic overlay.
	DefaultsDirs []string `toml:"defaults_dirs"`
	// OptOutFlag disables the dedup when it exists.
	OptOutFlag string `toml:"opt_out_flag"`
}

// OEMConfig copies a PXE initrd's OEM tree.
type OEMConfig struct {
	Enabled bool `toml:"enabled"`
	// Source is a directory of the initrd (a host path, not in the root).
	Source string `toml:"source"`
	// Target is the directory in the root, copied into only when it is a
	// mount point.
	Target string `toml:"target"`
}

// BlankMachineID is the placeholder Flatcar images ship in /etc/machine-id.
const BlankMachineID = "42000000000000000000000000000042"

// Default returns Flatcar's layout, every duty on.
func Default() Config {
	return Config{
		Enabled: true,
		Reset: ResetConfig{Enabled: true, FlagFile: "/selective-os-reset", MaxSize: 64 << 10,
			Protect: []string{"/usr"}, MachineID: "/etc/machine-id"},
		Whiteouts: WhiteoutsConfig{Enabled: true, ListFile: "/usr/share/flatcar/etc-no-whiteouts",
			Always: []string{"/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"}},
		Tmpfiles: TmpfilesConfig{Enabled: true, Binary: "systemd-tmpfiles",
			Configs:  []string{"baselayout.conf", "baselayout-usr.conf", "baselayout-home.conf", "base_image_var.conf"},
			Commands: [][]string{{"/usr/sbin/flatcar-tmpfiles", "{ROOT}"}}},
		MachineID: MachineIDConfig{Enabled: true, File: "/etc/machine-id", Blank: BlankMachineID},
		Dedup: DedupConfig{Enabled: true, Etc: "/etc", DefaultsConfext: "00-flatcar-default", DefaultsDirs: []string{"/usr/share/flatcar/etc"},
			OptOutFlag: "/etc/.no-dup-update"},
		OEM: OEMConfig{Enabled: true, Source: "/usr/share/oem", Target: "/oem"},
	}
}

// Validate checks the paths of an enabled duty; the error names the key.
func (c *Config) Validate() error {
	abs := func(key, p string, empty bool) error {
		if p == "" && empty {
			return nil
		}
		if !path.IsAbs(p) || strings.IndexByte(p, 0) >= 0 {
			return fmt.Errorf("prepare.%s: %q is not an absolute path", key, p)
		}
		return nil
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Reset.Enabled {
		add(abs("reset.flag_file", c.Reset.FlagFile, false))
		add(abs("reset.machine_id", c.Reset.MachineID, true))
		for _, p := range c.Reset.Protect {
			add(abs("reset.protect", p, false))
		}
		if c.Reset.MaxSize <= 0 || c.Reset.MaxSize > 16<<20 {
			add(fmt.Errorf("prepare.reset.max_size: %d is not in 1..16777216", c.Reset.MaxSize))
		}
	}
	if c.Whiteouts.Enabled {
		add(abs("whiteouts.list_file", c.Whiteouts.ListFile, true))
		for _, p := range c.Whiteouts.Always {
			add(abs("whiteouts.always", p, false))
		}
	}
	if c.MachineID.Enabled {
		add(abs("machine_id.file", c.MachineID.File, false))
		if strings.TrimSpace(c.MachineID.Blank) == "" {
			add(fmt.Errorf("prepare.machine_id.blank: empty"))
		}
	}
	if c.Dedup.Enabled {
		add(abs("dedup.etc", c.Dedup.Etc, false))
		if path.Clean(c.Dedup.Etc) == "/" {
			add(fmt.Errorf("prepare.dedup.etc: the root itself cannot be deduplicated"))
		}
		for _, p := range c.Dedup.DefaultsDirs {
			add(abs("dedup.defaults_dirs", p, false))
		}
		add(abs("dedup.opt_out_flag", c.Dedup.OptOutFlag, true))
		if strings.ContainsAny(c.Dedup.DefaultsConfext, "/\x00") {
			add(fmt.Errorf("prepare.dedup.defaults_confext: %q is not an image name", c.Dedup.DefaultsConfext))
		}
	}
	if c.OEM.Enabled {
		add(abs("oem.source", c.OEM.Source, false))
		add(abs("oem.target", c.OEM.Target, false))
	}
	if c.Tmpfiles.Enabled {
		for _, n := range c.Tmpfiles.Configs {
			if n == "" || strings.ContainsAny(n, "/\x00") {
				add(fmt.Errorf("prepare.tmpfiles.configs: %q is not a file name", n))
			}
		}
		for _, cmd := range c.Tmpfiles.Commands {
			if len(cmd) == 0 || !path.IsAbs(cmd[0]) {
				add(fmt.Errorf("prepare.tmpfiles.commands: %q must start with an absolute program path", cmd))
			}
		}
	}
	if len(errs) > 0 {
		return joinErrs(errs)
	}
	return nil
}

package abslots

import (
	"bytes"
	"errors"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// ConfigDirs are searched inside the target root, highest priority first,
// like systemd's own configuration: the first abslots.toml found wins, and
// drop-ins (abslots.toml.d/*.toml) from all three are applied in file-name
// order, a drop-in in a higher-priority directory masking the same name in
// a lower one.
var ConfigDirs = []string{"/etc/ext-setup-root", "/run/ext-setup-root", "/usr/lib/ext-setup-root"}

// LoadConfig returns the default layout overlaid with the config files found
// inside root. A file that does not parse, or names an unknown key, is an
// error naming that file: a wrong layout could move images to the wrong
// place, so it is not silently ignored.
func LoadConfig(root FS) (*Config, error) {
	c := DefaultConfig()
	for _, d := range ConfigDirs {
		name := path.Join(d, "abslots.toml")
		b, err := root.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := c.Decode(bytes.NewReader(b), name); err != nil {
			return nil, err
		}
		break
	}
	dropins := map[string]string{}
	for i := len(ConfigDirs) - 1; i >= 0; i-- {
		dir := path.Join(ConfigDirs[i], "abslots.toml.d")
		ents, err := root.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".toml") && !e.IsDir() {
				dropins[e.Name()] = path.Join(dir, e.Name())
			}
		}
	}
	names := make([]string, 0, len(dropins))
	for n := range dropins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := root.ReadFile(dropins[n])
		if err != nil {
			return nil, err
		}
		if err := c.Decode(bytes.NewReader(b), dropins[n]); err != nil {
			return nil, err
		}
	}
	return c, c.Validate()
}

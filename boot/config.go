package boot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/fetch"
	"github.com/ext-setup-root/ext-setup-root/prepare"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// ConfigDirs are searched inside the root for boot.toml, highest priority
// first, like abslots.toml: the first file found is used, so an admin's
// /etc file replaces the OS image's /usr/lib default as a whole.
var ConfigDirs = []string{"/etc/ext-setup-root", "/run/ext-setup-root", "/usr/lib/ext-setup-root"}

// Config is what an OS image (or admin) configures for the boot stages in
// boot.toml:
//
//	# confext name patterns (path.Match) that must merge, or the boot
//	# stops in the emergency shell; [] makes nothing essential
//	essential_confexts = ["00-*default*"]
//	# the same for sysexts (none by default)
//	essential_sysexts = ["oem-*"]
//	# image policy for raw confexts and sysexts (systemd's --image-policy=
//	# syntax); unset: ImagePolicy= in the class's .conf, else systemd's
//	# class default
//	image_policy = "root=signed+absent:usr=signed+absent"
type Config struct {
	// EssentialConfexts is nil when the file does not set it.
	EssentialConfexts []string `toml:"essential_confexts"`
	EssentialSysexts  []string `toml:"essential_sysexts"`
	// ImagePolicy is image_policy ("" when unset), checked by ParseConfig.
	ImagePolicy string `toml:"image_policy"`
	// Prepare configures the pre stage's prepare step ([prepare] table;
	// keys left out keep prepare.Default(), Flatcar's layout).
	Prepare prepare.Config `toml:"prepare"`
	// Fetch configures the download of missing images in the post stage
	// ([fetch] table; keys left out keep fetch.DefaultConfig(), Flatcar's
	// release server, key and developer-key switch).
	Fetch fetch.Config `toml:"fetch"`
	// File is the in-root path the config came from ("" if none).
	File string `toml:"-"`
}

// ParseConfig decodes boot.toml from r; name is used in errors. Unknown
// keys are errors, so a typo does not silently drop an essential image.
func ParseConfig(r io.Reader, name string) (Config, error) {
	c := DefaultConfig()
	md, err := toml.NewDecoder(r).Decode(&c)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		keys := make([]string, len(u))
		for i, k := range u {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("%s: unknown key(s) %s (known: essential_confexts, essential_sysexts, image_policy, [prepare] and its tables, see docs/prepare.md, [fetch], see docs/fetch.md)", name, strings.Join(keys, ", "))
	}
	if err := c.Prepare.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := c.Fetch.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	for _, p := range append(append([]string(nil), c.EssentialConfexts...), c.EssentialSysexts...) {
		if _, err := path.Match(p, ""); err != nil {
			return Config{}, fmt.Errorf("%s: bad pattern %q: %w", name, p, err)
		}
	}
	if c.ImagePolicy != "" {
		if _, err := image.ParsePolicy(c.ImagePolicy); err != nil {
			return Config{}, fmt.Errorf("%s: image_policy: %w", name, err)
		}
	}
	c.File = name
	return c, nil
}

// DefaultConfig is the configuration without a boot.toml.
func DefaultConfig() Config {
	return Config{Prepare: prepare.Default(), Fetch: fetch.DefaultConfig()}
}

// LoadConfig reads the first boot.toml found in ConfigDirs inside root,
// resolved by file descriptor inside the root. No file is not an error:
// the result is then DefaultConfig.
func LoadConfig(root string) (Config, error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return DefaultConfig(), err
	}
	defer r.Close()
	for _, d := range ConfigDirs {
		name := path.Join(d, "boot.toml")
		b, err := r.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Config{}, err
		}
		return ParseConfig(strings.NewReader(string(b)), name)
	}
	return DefaultConfig(), nil
}

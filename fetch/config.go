package fetch

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
)

// Config is the [fetch] table of boot.toml. Its defaults are Flatcar's
// layout; another layout turns fetching off (enabled = false) or sets its
// own server, key and names.
type Config struct {
	Enabled bool `toml:"enabled"`
	// Source is where images come from: a base URL and a path template
	// ({BOARD}, {VERSION}, {ARCH}, {NAME}; NAME is the link name without
	// ".raw", e.g. oem-azure or flatcar-zfs), and the kernel command line
	// key whose value replaces the base URL.
	Source
	// Dev is used instead of Source when the trusted key's MD5 equals
	// Dev.KeyMD5 (Flatcar's developer key, whose images are on a
	// different server); no KeyMD5 turns the switch off.
	Dev DevSource `toml:"dev"`
	// Key is the in-root path of the PEM public key payloads must be
	// signed with.
	Key string `toml:"key"`
	// CABundle is the host path of the PEM CA bundle for HTTPS (in the
	// initrd the one the dracut module installs); "" uses the system
	// roots.
	CABundle string `toml:"ca_bundle"`
	// BoardKey is the os-release field that gives {BOARD} (Flatcar's
	// FLATCAR_BOARD); {ARCH} is the board without "-usr".
	BoardKey string `toml:"board_key"`
	// RequestTimeout bounds each wait for progress: connecting, the TLS
	// handshake, the response headers and every stretch without body
	// bytes. Deadline bounds one image's fetch with all its attempts.
	RequestTimeout string `toml:"request_timeout"`
	Deadline       string `toml:"deadline"`
	// Attempts is how often a transient failure (network error, HTTP
	// 5xx/429, a cut transfer) is tried, RetryDelay apart.
	Attempts   int    `toml:"attempts"`
	RetryDelay string `toml:"retry_delay"`
	// MaxImageMiB bounds the image size a payload may declare.
	MaxImageMiB uint64 `toml:"max_image_mib"`
	// Essential are link name patterns (path.Match, e.g. "oem-*") whose
	// failed fetch fails the boot; any other failed fetch is one error
	// line and the boot goes on without the image.
	Essential []string `toml:"essential"`
	// AllowHTTP permits http:// URLs (the payload is signed either way;
	// HTTPS also hides what is fetched).
	AllowHTTP bool `toml:"allow_http"`
}

// Source is a server: base URL, path template, kernel command line key.
type Source struct {
	BaseURL      string `toml:"base_url"`
	Path         string `toml:"path"`
	CmdlineParam string `toml:"cmdline_param"`
}

// DevSource is the developer-key server.
type DevSource struct {
	Source
	KeyMD5 string `toml:"key_md5"`
}

// DefaultConfig is Flatcar's layout (bootengine's URLs and switch).
func DefaultConfig() Config {
	return Config{
		Enabled: true,
		Source: Source{
			BaseURL:      "https://update.release.flatcar-linux.net",
			Path:         "{BOARD}/{VERSION}/{NAME}.gz",
			CmdlineParam: "flatcar.release_file_server_url",
		},
		Dev: DevSource{
			Source: Source{
				BaseURL:      "https://bincache.flatcar-linux.net",
				Path:         "images/{ARCH}/{VERSION}/flatcar_test_update-{NAME}.gz",
				CmdlineParam: "flatcar.dev_file_server_url",
			},
			KeyMD5: "7192addf4a7f890c0057d21653eff2ea",
		},
		Key:            "/usr/share/update_engine/update-payload-key.pub.pem",
		CABundle:       "/etc/ssl/certs/ca-certificates.crt",
		BoardKey:       "FLATCAR_BOARD",
		RequestTimeout: "30s",
		Deadline:       "5m",
		Attempts:       10,
		RetryDelay:     "2s",
		MaxImageMiB:    2048,
		Essential:      []string{"oem-*"},
	}
}

// Timing is the parsed durations of a Config.
type Timing struct {
	Request, Deadline, RetryDelay time.Duration
}

// Validate checks c and returns its durations.
func (c *Config) Validate() (Timing, error) {
	var t Timing
	var errs []string
	dur := func(key, v string, dst *time.Duration) {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Sprintf("fetch.%s %q is not a positive duration", key, v))
		}
		*dst = d
	}
	if !c.Enabled {
		return t, nil
	}
	dur("request_timeout", c.RequestTimeout, &t.Request)
	dur("deadline", c.Deadline, &t.Deadline)
	dur("retry_delay", c.RetryDelay, &t.RetryDelay)
	if c.Attempts < 1 || c.Attempts > 100 {
		errs = append(errs, fmt.Sprintf("fetch.attempts %d outside 1..100", c.Attempts))
	}
	if c.MaxImageMiB == 0 || c.MaxImageMiB > 64<<10 {
		errs = append(errs, fmt.Sprintf("fetch.max_image_mib %d outside 1..65536", c.MaxImageMiB))
	}
	if !path.IsAbs(c.Key) {
		errs = append(errs, fmt.Sprintf("fetch.key %q must be an absolute in-root path", c.Key))
	}
	for _, p := range c.Essential {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Sprintf("fetch.essential: bad pattern %q", p))
		}
	}
	for _, s := range []Source{c.Source, c.Dev.Source} {
		if s.BaseURL != "" {
			if _, err := c.checkURL(s.BaseURL); err != nil {
				errs = append(errs, "fetch: "+err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return t, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return t, nil
}

// checkURL accepts an absolute https (or, with AllowHTTP, http) URL with
// a host and no user information.
func (c *Config) checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %w", s, err)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && c.AllowHTTP) {
		return nil, fmt.Errorf("URL %q: scheme must be https (http only with allow_http)", s)
	}
	if u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("URL %q: needs a host and no user information", s)
	}
	return u, nil
}

// IsEssential reports whether a failed fetch of the image linked as name
// (e.g. "oem-azure") must fail the boot.
func (c *Config) IsEssential(name string) bool {
	for _, p := range c.Essential {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

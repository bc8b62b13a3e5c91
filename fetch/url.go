package fetch

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
)

// Target is the OS version an image is fetched for, and what its
// extension-release must say.
type Target struct {
	// ID is os-release's ID; Version the selection's version (the value
	// of abslots' version key, e.g. Flatcar's VERSION); VersionID and
	// SysextLevel what the image's extension-release must carry (a
	// SYSEXT_LEVEL, when the OS has one, is compared instead of
	// VERSION_ID, as systemd does).
	ID, Version, VersionID, SysextLevel string
	// Board and Arch fill {BOARD} and {ARCH}; Architecture is systemd's
	// name of the architecture (x86-64, arm64) for ARCHITECTURE=.
	Board, Arch, Architecture string
}

// urlValueOK accepts values that stay one path segment: letters, digits
// and . _ + - (not "." or ".."), so nothing read from disk reshapes a URL.
func urlValueOK(v string) bool {
	if v == "" || v == "." || v == ".." || len(v) > 128 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)) {
			return false
		}
	}
	return true
}

// source picks the server: the developer one when the key's MD5 matches
// Dev.KeyMD5 (as bootengine), else the release one.
func (c *Config) source(key []byte) (Source, bool) {
	if c.Dev.KeyMD5 != "" {
		if md5sumHex(key) == strings.ToLower(c.Dev.KeyMD5) {
			return c.Dev.Source, true
		}
	}
	return c.Source, false
}

// URL builds the URL of the image linked as name for t: the base URL (the
// kernel command line's value of src.CmdlineParam when given, else
// src.BaseURL), then src.Path with its placeholders filled.
func (c *Config) URL(src Source, cl *kcmdline.Cmdline, t Target, name string) (string, error) {
	base := src.BaseURL
	if src.CmdlineParam != "" && cl != nil {
		if v, ok := cl.Get(src.CmdlineParam); ok && v != "" {
			base = v
		}
	}
	if base == "" {
		return "", fmt.Errorf("no server configured (fetch.base_url empty and no %s= on the kernel command line)", src.CmdlineParam)
	}
	if _, err := c.checkURL(base); err != nil {
		return "", err
	}
	vars := map[string]string{"BOARD": t.Board, "VERSION": t.Version, "ARCH": t.Arch, "NAME": name}
	p := src.Path
	for k, v := range vars {
		if !strings.Contains(p, "{"+k+"}") {
			continue
		}
		if !urlValueOK(v) {
			return "", fmt.Errorf("{%s} value %q cannot be part of a URL (letters, digits and ._+- only)", k, v)
		}
		p = strings.ReplaceAll(p, "{"+k+"}", v)
	}
	if strings.ContainsAny(p, "{}") {
		return "", fmt.Errorf("path template %q has an unknown placeholder", src.Path)
	}
	u, err := url.Parse(strings.TrimRight(base, "/") + "/" + strings.TrimLeft(p, "/"))
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// md5sumHex is the lower-case hex MD5 of b (the dev-key switch).
func md5sumHex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// ConfigError is a configuration file systemd refuses to parse (an invalid
// section header, invalid UTF-8, an over-long line); it names the file and
// line. systemd fails the whole command in that case, and so do we.
type ConfigError struct {
	File string
	Line int
	Msg  string
}

// Error is "FILE:LINE: message", as systemd reports configuration errors.
func (e *ConfigError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Assignment is one KEY=VALUE line of a systemd INI file.
type Assignment struct {
	File    string
	Line    int
	Section string // "" outside any section
	Key     string
	Value   string
}

// maxConfigLine is systemd's LONG_LINE_MAX.
const maxConfigLine = 1 << 20

// ParseINI reads a systemd-style INI file (the syntax of systemd's
// config_parse()): '#' and ';' start comment lines, a line ending in an
// unescaped backslash continues on the next one (the backslash becomes a
// space), "[Section]" opens a section, "Key = value" has key and value
// stripped of surrounding whitespace. Lines without '=' or with an empty key
// are ignored with a warning, like systemd; a malformed section header,
// invalid UTF-8 or a line longer than 1 MiB is a *ConfigError. Values are
// returned verbatim (no quote processing): each setting's parser decides.
func ParseINI(r io.Reader, name string) ([]Assignment, []string, error) {
	var out []Assignment
	var warnings []string
	section := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxConfigLine+1)
	var cont []byte
	contLine := 0
	line := 0

	parse := func(l []byte, lineNo int) error {
		s := strings.Trim(string(l), " \t\n\r")
		if s == "" {
			return nil
		}
		if !utf8.ValidString(s) {
			return &ConfigError{name, lineNo, "invalid UTF-8"}
		}
		if s[0] == '[' {
			if s[len(s)-1] != ']' {
				return &ConfigError{name, lineNo, fmt.Sprintf("invalid section header %q", s)}
			}
			n := s[1 : len(s)-1]
			for i := 0; i < len(n); i++ {
				if c := n[i]; c < ' ' || c == 0x7f || c == '"' || c == '\'' || c == '\\' {
					return &ConfigError{name, lineNo, fmt.Sprintf("bad characters in section header %q", s)}
				}
			}
			section = n
			return nil
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			warnings = append(warnings, fmt.Sprintf("%s:%d: missing '=', ignoring line", name, lineNo))
			return nil
		}
		if k == "" {
			warnings = append(warnings, fmt.Sprintf("%s:%d: missing key name before '=', ignoring line", name, lineNo))
			return nil
		}
		out = append(out, Assignment{File: name, Line: lineNo, Section: section,
			Key: strings.Trim(k, " \t\n\r"), Value: strings.Trim(v, " \t\n\r")})
		return nil
	}

	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) > maxConfigLine {
			return nil, nil, &ConfigError{name, line, "line too long"}
		}
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		}
		if t := bytes.TrimLeft(b, " \t\n\r"); len(t) > 0 && (t[0] == '#' || t[0] == ';') {
			continue
		}
		if cont != nil {
			b = append(cont, b...)
		} else {
			contLine = line
		}
		if iniEndsInEscape(b) {
			b = append([]byte(nil), b...)
			b[len(b)-1] = ' '
			cont = b
			continue
		}
		cont = nil
		if err := parse(b, contLine); err != nil {
			return nil, nil, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, &ConfigError{name, line + 1, "line too long"}
		}
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if cont != nil {
		if err := parse(cont, contLine); err != nil {
			return nil, nil, err
		}
	}
	return out, warnings, nil
}

// iniEndsInEscape reports a trailing backslash that is not itself escaped.
func iniEndsInEscape(b []byte) bool {
	escaped := false
	for _, c := range b {
		if escaped {
			escaped = false
		} else if c == '\\' {
			escaped = true
		}
	}
	return escaped
}

// ConfigDirs are the directories holding systemd/<ConfigName> and its
// ".d" drop-ins inside the root, highest priority first (CONF_PATHS).
var ConfigDirs = []string{"/etc", "/run", "/usr/local/lib", "/usr/lib"}

// Config is what the class's configuration file says.
type Config struct {
	// Mutable is Mutable= from [SysExt]/[ConfExt]; nil if never set (or
	// only set to invalid values).
	Mutable *MutableMode
	// ImagePolicy is ImagePolicy= as written ("" if unset or reset by an
	// empty assignment); parsing the policy is the caller's business.
	ImagePolicy string
	// Files lists the files read, in order, as in-root paths.
	Files []string
	// Warnings are ignored lines and values, "file:line: reason".
	Warnings []string
}

// LoadConfig reads systemd/<c.ConfigName> inside the root like systemd's
// config_parse_standard_file_with_dropins_full(): the first main file found
// in ConfigDirs (/etc, /run, /usr/local/lib, /usr/lib), then every
// "*.conf" in the "<ConfigName>.d/" directories of all of them, sorted by
// file name, a name in a higher-priority directory hiding the same name in
// lower ones; later assignments override earlier ones. A drop-in that is
// empty or a symlink to /dev/null masks the name. A main file that is also
// one of the drop-ins (same inode) is read only as the drop-in.
func LoadConfig(root *rootfs.Root, c *Class) (Config, error) {
	var cfg Config
	main := "systemd/" + c.ConfigName

	type dropin struct{ name, path string }
	byName := map[string]string{}
	masked := map[string]bool{}
	for _, d := range ConfigDirs {
		dir := d + "/" + main + ".d"
		ents, err := root.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return cfg, fmt.Errorf("list %s drop-ins: %w", main, err)
		}
		for _, e := range ents {
			n := e.Name()
			if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".conf") {
				continue
			}
			if _, seen := byName[n]; seen || masked[n] {
				continue
			}
			p := dir + "/" + n
			if target, err := root.Readlink(p); err == nil && target == "/dev/null" {
				masked[n] = true
				continue
			}
			st, err := root.Stat(p)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return cfg, fmt.Errorf("stat drop-in %s: %w", p, err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				continue
			}
			if st.Size == 0 {
				masked[n] = true
				continue
			}
			byName[n] = p
		}
	}
	var dropins []dropin
	for n, p := range byName {
		dropins = append(dropins, dropin{n, p})
	}
	sort.Slice(dropins, func(i, j int) bool { return dropins[i].name < dropins[j].name })

	dropinInodes := map[[2]uint64]bool{}
	for _, d := range dropins {
		if st, err := root.Stat(d.path); err == nil {
			dropinInodes[[2]uint64{st.Dev, st.Ino}] = true
		}
	}

	var files []string
	for _, d := range ConfigDirs {
		p := d + "/" + main
		st, err := root.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return cfg, fmt.Errorf("stat %s: %w", p, err)
		}
		if !dropinInodes[[2]uint64{st.Dev, st.Ino}] {
			files = append(files, p)
		}
		break
	}
	for _, d := range dropins {
		files = append(files, d.path)
	}

	for _, p := range files {
		data, err := root.ReadFile(p)
		if err != nil {
			return cfg, fmt.Errorf("read %s: %w", p, err)
		}
		as, warns, err := ParseINI(bytes.NewReader(data), p)
		if err != nil {
			return cfg, err
		}
		cfg.Files = append(cfg.Files, p)
		cfg.Warnings = append(cfg.Warnings, warns...)
		cfg.apply(c, as)
	}
	return cfg, nil
}

// apply folds assignments of the class section into cfg.
func (cfg *Config) apply(c *Class, as []Assignment) {
	for _, a := range as {
		if a.Section != c.ConfigSection {
			continue
		}
		switch a.Key {
		case "Mutable":
			m, err := ParseMutableMode(a.Value)
			if err != nil {
				cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s:%d: failed to parse Mutable=%q, ignoring", a.File, a.Line, a.Value))
				continue
			}
			cfg.Mutable = &m
		case "ImagePolicy":
			if a.Value != "" {
				if _, err := image.ParsePolicy(a.Value); err != nil {
					cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s:%d: failed to parse ImagePolicy=%q, ignoring: %v", a.File, a.Line, a.Value, err))
					continue
				}
			}
			cfg.ImagePolicy = a.Value
		default:
			if !strings.HasPrefix(a.Key, "X-") {
				cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s:%d: unknown key %q in section [%s], ignoring", a.File, a.Line, a.Key, a.Section))
			}
		}
	}
}

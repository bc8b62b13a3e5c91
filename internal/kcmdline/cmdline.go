// Package kcmdline is the one kernel command line parser of ext-setup-root:
// the boot pipeline, the A/B slot selection and every switch they read go
// through it, so a switch means the same everywhere.
//
// It follows systemd's reading of /proc/cmdline rather than the kernel's
// own parameter parser, because the switches we read are systemd-style
// ones (systemd.confext=, rd.systemd.sysext=, mount.usr=) and our own
// (ext-setup-root.*), and people expect them to behave like systemd's:
//   - words are separated by white space; a double quote toggles quoting
//     and is removed wherever it appears ("a b"=c, key="a b");
//   - the first '=' separates key and value; a word without '=' is a
//     switch without a value;
//   - keys match with '-' and '_' treated alike (systemd's
//     proc_cmdline_key_streq), so ext-setup-root.dry-run and
//     ext_setup_root.dry_run are the same switch;
//   - when a key appears more than once the last occurrence wins;
//   - a boolean switch given without a value is true; a value is read like
//     systemd's parse_boolean (1/yes/y/true/t/on, 0/no/n/false/f/off, any
//     case); another value is an error the caller logs before going on with
//     the default.
//
// u-root's pkg/cmdline was considered: its parser that takes a reader is
// unexported (the exported API reads /proc/cmdline itself, which tests and
// paths.ProcCmdline cannot redirect), it treats single and Unicode quotation
// marks as quotes, which neither the kernel nor systemd does, and it folds a
// bare switch into the value "1", losing the difference between "key" and
// "key=1" (a bare ext-setup-root.essential means an empty list, not "1").
package kcmdline

import (
	"fmt"
	"io"
	"strings"
	"unicode"
)

// MaxSize bounds what Parse reads. The kernel's own limit
// (COMMAND_LINE_SIZE) is 2048 bytes on x86 and 4096 on arm64; a boot
// loader cannot pass more, so a longer input is not a command line.
const MaxSize = 64 << 10

// Param is one word of the command line.
type Param struct {
	Key      string // as written
	Value    string // quotes removed; "" when HasValue is false
	HasValue bool   // the word contained '='
}

// Cmdline is a parsed kernel command line, in order.
type Cmdline struct {
	Params []Param
}

// Parse reads a kernel command line (the contents of /proc/cmdline) from r.
// Only a read error or input larger than MaxSize is an error.
func Parse(r io.Reader) (*Cmdline, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("kernel command line longer than %d bytes", MaxSize)
	}
	return ParseString(string(b)), nil
}

// ParseString parses s like Parse.
func ParseString(s string) *Cmdline {
	c := &Cmdline{}
	for _, w := range split(s) {
		k, v, ok := strings.Cut(w, "=")
		if k == "" {
			continue
		}
		c.Params = append(c.Params, Param{Key: k, Value: v, HasValue: ok})
	}
	return c
}

// split separates s into words at unquoted white space; double quotes
// group and are removed.
func split(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && unicode.IsSpace(r):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// KeyEqual reports whether two keys name the same switch: byte for byte
// equal except that '-' and '_' match each other.
func KeyEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '-' {
			x = '_'
		}
		if y == '-' {
			y = '_'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Lookup returns the last occurrence of any of keys (aliases such as
// systemd.confext and rd.systemd.confext share one setting, and the later
// word wins whichever spelling it uses).
func (c *Cmdline) Lookup(keys ...string) (Param, bool) {
	if c == nil {
		return Param{}, false
	}
	for i := len(c.Params) - 1; i >= 0; i-- {
		for _, k := range keys {
			if KeyEqual(c.Params[i].Key, k) {
				return c.Params[i], true
			}
		}
	}
	return Param{}, false
}

// Get returns the value of the last occurrence of key and whether the key
// is present at all (with or without a value).
func (c *Cmdline) Get(keys ...string) (string, bool) {
	p, ok := c.Lookup(keys...)
	return p.Value, ok
}

// Bool returns the boolean switch named by keys: def when absent, true when
// given without a value, else its value read by ParseBool. An unreadable
// value gives def and an error naming the word, which the caller logs.
func (c *Cmdline) Bool(def bool, keys ...string) (bool, error) {
	p, ok := c.Lookup(keys...)
	switch {
	case !ok:
		return def, nil
	case !p.HasValue:
		return true, nil
	}
	v, ok := ParseBool(p.Value)
	if !ok {
		return def, fmt.Errorf("kernel command line: %s=%s is not a boolean (1/yes/true/on or 0/no/false/off); using %v", p.Key, p.Value, def)
	}
	return v, nil
}

// UnitSwitchOff reports whether a systemd extension switch such as
// systemd.confext= or systemd.sysext= turns the unit that reads it off,
// exactly as systemd 262 decides it in two places:
//   - the unit's ConditionKernelCommandLine=!KEY=0, which compares whole
//     words: any word "KEY=0" anywhere on the line fails the condition,
//     whatever follows it (condition_test_kernel_command_line());
//   - the tool's own check when the service manager runs it,
//     proc_cmdline_get_bool(KEY) with "true when missing": the last
//     occurrence wins, keys match with '-' and '_' alike, a bare KEY is on,
//     and a false boolean in any spelling (0, no, off, false, ...) skips
//     ("Disabled by the kernel command line option 'KEY=', skipping
//     execution."). An unreadable value lets the tool proceed: off is then
//     false and err names the word for the log.
//
// The rd.-prefixed key is a different switch (the initrd's own
// hierarchies), so nothing is stripped or aliased here.
func (c *Cmdline) UnitSwitchOff(key string) (off bool, err error) {
	if c == nil {
		return false, nil
	}
	for _, p := range c.Params {
		if p.HasValue && p.Key == key && p.Value == "0" {
			return true, nil
		}
	}
	on, err := c.Bool(true, key)
	return !on, err
}

// ParseBool reads a boolean as systemd's parse_boolean() does.
func ParseBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, true
	case "0", "no", "n", "false", "f", "off":
		return false, true
	}
	return false, false
}

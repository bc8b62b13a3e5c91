package abslots

import (
	"bufio"
	"io"
	"strings"
)

// Cmdline is a parsed kernel command line: the last value of each key wins,
// as for the kernel; a bare switch has the value "1". Keys keep their
// spelling; lookups treat '-' and '_' alike.
type Cmdline map[string]string

// ParseCmdline reads a kernel command line. Values may be double-quoted
// (key="a b"); quotes are removed.
func ParseCmdline(r io.Reader) (Cmdline, error) {
	b, err := io.ReadAll(bufio.NewReader(r))
	if err != nil {
		return nil, err
	}
	c := Cmdline{}
	s := string(b)
	for len(s) > 0 {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			break
		}
		var tok strings.Builder
		inq := false
		i := 0
		for ; i < len(s); i++ {
			ch := s[i]
			if ch == '"' {
				inq = !inq
				continue
			}
			if !inq && (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
				break
			}
			tok.WriteByte(ch)
		}
		s = s[i:]
		t := tok.String()
		if k, v, ok := strings.Cut(t, "="); ok {
			c[canonKey(k)] = v
		} else {
			c[canonKey(t)] = "1"
		}
	}
	return c, nil
}

func canonKey(k string) string { return strings.ReplaceAll(k, "-", "_") }

// Get returns the value of key and whether it was given.
func (c Cmdline) Get(key string) (string, bool) {
	v, ok := c[canonKey(key)]
	return v, ok
}

// Bool reports a switch: present without value, or with a true value
// (1, yes, true, on). Absent gives def.
func (c Cmdline) Bool(key string, def bool) bool {
	v, ok := c.Get(key)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on", "y":
		return true
	}
	return false
}

// switchesFrom reads the abslots kernel command line switches.
func switchesFrom(c Cmdline) Switches {
	return Switches{
		Disabled: !c.Bool("ext-setup-root.abslots", true),
		DryRun:   c.Bool("ext-setup-root.dry-run", false),
		Debug:    c.Bool("ext-setup-root.debug", false),
	}
}

package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
)

// FuzzMutableMode: a mode string parses to a mode whose name parses back
// to the same mode, or to an error naming the valid modes.
func FuzzMutableMode(f *testing.F) {
	for _, s := range append(MutableModeNames(), "help", "1", "YES", "off", "", " yes", "ephemeral-", "Auto") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMutableMode(s)
		if errors.Is(err, ErrMutableHelp) {
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), "ephemeral-import") {
				t.Fatalf("error does not list the modes: %v", err)
			}
			return
		}
		m2, err := ParseMutableMode(m.String())
		if err != nil || m2 != m {
			t.Fatalf("%q -> %v -> %v, %v", s, m, m2, err)
		}
		b, ok := kcmdline.ParseBool(s)
		if ok && (m == MutableYes) != b {
			t.Fatalf("boolean %q gave mode %v", s, m)
		}
	})
}

// FuzzParseINI: systemd's INI syntax (confext.conf, sysext.conf and their
// drop-ins) never panics, every assignment has a key without surrounding
// white space and a line number, and sections are what a header named.
func FuzzParseINI(f *testing.F) {
	for _, s := range []string{
		"[ConfExt]\nMutable=auto\n",
		"[SysExt]\nMutable = yes\n# comment\n; comment\n",
		"[ConfExt]\nMutable=a\\\nuto\n[Other]\nK=V\n",
		"no-equals\n=empty key\n[bad\n",
		"[ConfExt]\nMutable=\xff\n",
		"K=V\\",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		as, _, err := ParseINI(bytes.NewReader(data), "fuzz.conf")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.conf") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, a := range as {
			// systemd's WHITESPACE is " \t\n\r": a key of "\v" is a key
			// (seed testdata/fuzz/FuzzParseINI/010799271c7e1e05).
			if a.Key == "" || a.Key != strings.Trim(a.Key, " \t\n\r") || a.Line < 1 || a.File != "fuzz.conf" {
				t.Fatalf("assignment %+v", a)
			}
			// "[]]" is section "]", as in systemd's config_parse (seed
			// testdata/fuzz/FuzzParseINI/5fab2f55a198f0a6).
			if strings.Contains(a.Section, "\n") {
				t.Fatalf("section %q", a.Section)
			}
		}
	})
}

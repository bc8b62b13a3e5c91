package cescape

import "testing"

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"var/lib/extensions.mutable/.systemd-etc-workdir", "a b", "new\nline", `back\slash`, "tab\there", "quote'\"", "\x01ctl\x7f\xff", ""} {
		got, err := Unescape(Escape(s))
		if err != nil || got != s {
			t.Errorf("Unescape(Escape(%q)) = %q, %v", s, got, err)
		}
	}
	if got := Escape("a\nb\x01"); got != `a\nb\x01` {
		t.Errorf("Escape: %q", got)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`a\tb`: "a\tb", `\101`: "A", `\x41\"`: `A"`, `plain`: "plain", `\\x3a`: `\x3a`} {
		if got, err := Unescape(in); err != nil || got != want {
			t.Errorf("Unescape(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`\x4`, `\xzz`, `\9`, `\18`, `\`, `\q`, `\77`} {
		if got, err := Unescape(bad); err == nil {
			t.Errorf("Unescape(%q) accepted: %q", bad, got)
		}
	}
}

// FuzzUnescape: arbitrary input never panics, and whatever Escape writes
// comes back unchanged.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`a\tb`, `\101`, `\x41`, `\`, "x\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Unescape(s)
		if got, err := Unescape(Escape(s)); err != nil || got != s {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", s, got, err)
		}
	})
}

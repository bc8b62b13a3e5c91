package kcmdline

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Param
	}{
		{"", nil},
		{" \n", nil},
		{"quiet root=/dev/vda\n", []Param{{"quiet", "", false}, {"root", "/dev/vda", true}}},
		{`x="quoted value" mount.usr=PARTUUID=abc`, []Param{{"x", "quoted value", true}, {"mount.usr", "PARTUUID=abc", true}}},
		{`"systemd.sysext=0" e=`, []Param{{"systemd.sysext", "0", true}, {"e", "", true}}},
		{"a\tb\r\nc", []Param{{"a", "", false}, {"b", "", false}, {"c", "", false}}},
		{`=novalue k="unterminated value`, []Param{{"k", "unterminated value", true}}},
	} {
		c, err := Parse(strings.NewReader(tc.in))
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if !reflect.DeepEqual(c.Params, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.in, c.Params, tc.want)
		}
	}
}

func TestParseTooLong(t *testing.T) {
	if _, err := Parse(strings.NewReader(strings.Repeat("a ", MaxSize))); err == nil {
		t.Fatal("no error for a command line over MaxSize")
	}
	if _, err := Parse(strings.NewReader(strings.Repeat("a", MaxSize))); err != nil {
		t.Fatalf("MaxSize bytes: %v", err)
	}
}

// TestDashUnderscore is the disagreement issue 8 found: abslots took
// ext_setup_root.dry_run as a dry run, boot did not. Both now ask Lookup.
func TestDashUnderscore(t *testing.T) {
	for _, in := range []string{"ext_setup_root.dry_run", "ext-setup-root.dry-run", "ext_setup-root.dry_run=yes", "ext-setup_root.dry-run=1"} {
		c := ParseString(in)
		if v, err := c.Bool(false, "ext-setup-root.dry-run"); !v || err != nil {
			t.Errorf("%q: dry run %v, %v", in, v, err)
		}
		if v, err := c.Bool(false, "ext_setup_root.dry_run"); !v || err != nil {
			t.Errorf("%q (underscore lookup): dry run %v, %v", in, v, err)
		}
	}
	// Only '-' and '_' are folded: '.' is not, and case matters.
	c := ParseString("ext-setup-root-dry-run EXT-SETUP-ROOT.DRY-RUN")
	if v, _ := c.Bool(false, "ext-setup-root.dry-run"); v {
		t.Error("folded '.' or case")
	}
}

func TestLastWins(t *testing.T) {
	c := ParseString("rd.systemd.confext=0 systemd.confext=1 a=1 a=2")
	if v, _ := c.Bool(true, "systemd.confext", "rd.systemd.confext"); !v {
		t.Error("later alias did not win")
	}
	c = ParseString("systemd.confext=1 rd.systemd.confext=0")
	if v, _ := c.Bool(true, "systemd.confext", "rd.systemd.confext"); v {
		t.Error("later alias did not win")
	}
	if v, ok := ParseString("a=1 a=2").Get("a"); v != "2" || !ok {
		t.Errorf("a = %q %v", v, ok)
	}
	if _, ok := ParseString("b").Get("a"); ok {
		t.Error("absent key found")
	}
	var nilc *Cmdline
	if _, ok := nilc.Get("a"); ok {
		t.Error("nil Cmdline found a key")
	}
}

func TestBool(t *testing.T) {
	for _, tc := range []struct {
		in      string
		def     bool
		want    bool
		wantErr bool
	}{
		{"", true, true, false},
		{"", false, false, false},
		{"k", false, true, false},
		{"k=YES", false, true, false},
		{"k=off", true, false, false},
		{"k=", true, true, true},
		{"k=maybe", false, false, true},
		{"k=maybe", true, true, true},
	} {
		got, err := ParseString(tc.in).Bool(tc.def, "k")
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%q def %v: %v, %v", tc.in, tc.def, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.in) {
			t.Errorf("%q: error does not name the word: %v", tc.in, err)
		}
	}
}

// TestUnitSwitchOff: systemd 262's two checks of systemd.confext= and
// friends, the unit condition (any word KEY=0) and the tool's last-wins
// boolean; the rd. key is a separate switch.
func TestUnitSwitchOff(t *testing.T) {
	for _, tc := range []struct {
		in      string
		off     bool
		problem bool
	}{
		{"", false, false},
		{"systemd.confext", false, false},
		{"systemd.confext=0", true, false},
		{`"systemd.confext=0"`, true, false},
		{"systemd.confext=0 systemd.confext=1", true, false},
		{"systemd.confext=1 systemd.confext=0", true, false},
		{"systemd.confext=no", true, false},
		{"systemd.confext=OFF", true, false},
		{"systemd.confext=no systemd.confext=1", false, false},
		{"systemd.confext=00", false, true},
		{"systemd.confext=", false, true},
		{"rd.systemd.confext=0", false, false},
		{"systemd.confext.x=0 xsystemd.confext=0", false, false},
	} {
		off, err := ParseString(tc.in).UnitSwitchOff("systemd.confext")
		if off != tc.off || (err != nil) != tc.problem {
			t.Errorf("%q: off=%v err=%v, want off=%v problem=%v", tc.in, off, err, tc.off, tc.problem)
		}
	}
}

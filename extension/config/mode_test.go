package config

import (
	"errors"
	"testing"
)

func TestParseMutableMode(t *testing.T) {
	for in, want := range map[string]MutableMode{
		"no": MutableNo, "yes": MutableYes, "auto": MutableAuto, "import": MutableImport,
		"ephemeral": MutableEphemeral, "ephemeral-import": MutableEphemeralImport,
		"1": MutableYes, "TRUE": MutableYes, "on": MutableYes, "y": MutableYes, "t": MutableYes,
		"0": MutableNo, "off": MutableNo, "False": MutableNo, "n": MutableNo,
	} {
		got, err := ParseMutableMode(in)
		if err != nil || got != want {
			t.Errorf("ParseMutableMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Auto", "maybe", "ephemeral_import"} {
		if _, err := ParseMutableMode(in); err == nil {
			t.Errorf("ParseMutableMode(%q) accepted", in)
		}
	}
	if _, err := ParseMutableMode("help"); !errors.Is(err, ErrMutableHelp) {
		t.Errorf("help: %v", err)
	}
	for i, n := range MutableModeNames() {
		if MutableMode(i).String() != n {
			t.Errorf("String(%d) = %q, want %q", i, MutableMode(i), n)
		}
	}
}

func TestResolveMutableModePrecedence(t *testing.T) {
	yes, imp := MutableYes, MutableImport
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == Confext.MutableEnv {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name   string
		cli    string
		cliSet bool
		env    string
		cfg    Config
		want   MutableMode
		src    ModeSource
		warns  int
	}{
		{"default", "", false, "", Config{}, MutableNo, ModeFromDefault, 0},
		{"config", "", false, "", Config{Mutable: &imp}, MutableImport, ModeFromConfig, 0},
		{"env beats config", "", false, "auto", Config{Mutable: &imp}, MutableAuto, ModeFromEnv, 0},
		{"cli beats env", "ephemeral", true, "auto", Config{Mutable: &imp}, MutableEphemeral, ModeFromCLI, 0},
		{"cli no beats env yes", "no", true, "yes", Config{}, MutableNo, ModeFromCLI, 0},
		{"invalid env ignored", "", false, "bogus", Config{Mutable: &yes}, MutableYes, ModeFromConfig, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, src, warns, err := ResolveMutableMode(Confext, tc.cli, tc.cliSet, env(tc.env), tc.cfg)
			if err != nil || m != tc.want || src != tc.src || len(warns) != tc.warns {
				t.Errorf("got %v %v %v %v, want %v %v %d warnings", m, src, warns, err, tc.want, tc.src, tc.warns)
			}
		})
	}
	if _, _, _, err := ResolveMutableMode(Confext, "bogus", true, nil, Config{}); err == nil {
		t.Error("invalid --mutable accepted")
	}
	// The sysext class reads its own variable only.
	if m, _, _, _ := ResolveMutableMode(Sysext, "", false, env("yes"), Config{}); m != MutableNo {
		t.Errorf("sysext read the confext variable: %v", m)
	}
}

func TestMutableDirNaming(t *testing.T) {
	for h, want := range map[string]string{"/etc": "etc", "/usr": "usr", "/opt/": "opt", "/foo/bar/baz": "foo.bar.baz", "//x//": "x"} {
		if got := HierarchyDirName(h); got != want {
			t.Errorf("HierarchyDirName(%q) = %q, want %q", h, got, want)
		}
	}
	if MutableDir("/etc") != "/var/lib/extensions.mutable/etc" || WorkDirName("/etc") != ".systemd-etc-workdir" {
		t.Errorf("MutableDir/WorkDirName: %q %q", MutableDir("/etc"), WorkDirName("/etc"))
	}
}

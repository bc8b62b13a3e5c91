package release

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	host := HostFromFields(map[string]string{"ID": "flatcar", "ID_LIKE": "coreos gentoo", "VERSION_ID": "1.0", "CONFEXT_LEVEL": "2"})
	noVersion := HostFromFields(map[string]string{"ID": "arch"})
	levelOnly := HostFromFields(map[string]string{"ID": "flatcar", "CONFEXT_LEVEL": "2"})
	opts := Options{ScopeKey: "CONFEXT_SCOPE", LevelKey: "CONFEXT_LEVEL", Scope: "system", Arch: "x86-64"}
	initrd := opts
	initrd.Scope = "initrd"

	for _, tc := range []struct {
		name   string
		ext    map[string]string
		host   Host
		opts   Options
		ok     bool
		reason string // substring
	}{
		{"no data", map[string]string{}, host, opts, false, "no release data"},
		{"nil data", nil, host, opts, false, "no release data"},
		{"default scope system", map[string]string{"ID": "_any"}, host, opts, true, ""},
		{"default scope excludes initrd", map[string]string{"ID": "_any"}, host, initrd, false, `CONFEXT_SCOPE "system portable" does not include host scope "initrd"`},
		{"explicit initrd scope", map[string]string{"ID": "_any", "CONFEXT_SCOPE": "initrd system"}, host, initrd, true, ""},
		{"scope mismatch", map[string]string{"ID": "_any", "CONFEXT_SCOPE": "initrd"}, host, opts, false, `does not include host scope "system"`},
		{"empty scope matches nothing", map[string]string{"ID": "_any", "CONFEXT_SCOPE": ""}, host, opts, false, "scope"},
		{"other class scope key ignored", map[string]string{"ID": "_any", "SYSEXT_SCOPE": "initrd"}, host, opts, true, ""},
		{"arch match", map[string]string{"ID": "_any", "ARCHITECTURE": "x86-64"}, host, opts, true, ""},
		{"arch _any", map[string]string{"ID": "_any", "ARCHITECTURE": "_any"}, host, opts, true, ""},
		{"arch mismatch", map[string]string{"ID": "_any", "ARCHITECTURE": "arm64"}, host, opts, false, `ARCHITECTURE "arm64" does not match host architecture "x86-64"`},
		{"arch before id", map[string]string{"ARCHITECTURE": "arm64"}, host, opts, false, "ARCHITECTURE"},
		{"missing id", map[string]string{"VERSION_ID": "1.0"}, host, opts, false, "ID is missing"},
		{"any skips version", map[string]string{"ID": "_any", "VERSION_ID": "9"}, host, opts, true, ""},
		{"id mismatch", map[string]string{"ID": "fedora", "VERSION_ID": "1.0"}, host, opts, false, `ID "fedora" does not match host ID "flatcar" or ID_LIKE "coreos gentoo"`},
		{"id mismatch no like", map[string]string{"ID": "fedora"}, noVersion, opts, false, `ID "fedora" does not match host ID "arch"`},
		{"id like", map[string]string{"ID": "gentoo", "CONFEXT_LEVEL": "2"}, host, opts, true, ""},
		{"rolling host", map[string]string{"ID": "arch"}, noVersion, opts, true, ""},
		{"level match wins over version", map[string]string{"ID": "flatcar", "CONFEXT_LEVEL": "2", "VERSION_ID": "0.9"}, host, opts, true, ""},
		{"level mismatch", map[string]string{"ID": "flatcar", "CONFEXT_LEVEL": "3", "VERSION_ID": "1.0"}, host, opts, false, `CONFEXT_LEVEL "3" does not match host CONFEXT_LEVEL "2"`},
		{"version match", map[string]string{"ID": "flatcar", "VERSION_ID": "1.0"}, host, opts, true, ""},
		{"version mismatch", map[string]string{"ID": "flatcar", "VERSION_ID": "1.1"}, host, opts, false, `VERSION_ID "1.1" does not match host VERSION_ID "1.0"`},
		{"version missing", map[string]string{"ID": "flatcar"}, host, opts, false, "VERSION_ID is missing"},
		{"host level only, ext none", map[string]string{"ID": "flatcar"}, levelOnly, opts, true, ""},
		{"host level only, ext mismatch", map[string]string{"ID": "flatcar", "CONFEXT_LEVEL": "1"}, levelOnly, opts, false, "CONFEXT_LEVEL"},
		{"sysext level key", map[string]string{"ID": "flatcar", "SYSEXT_LEVEL": "7"}, HostFromFields(map[string]string{"ID": "flatcar", "VERSION_ID": "1", "SYSEXT_LEVEL": "7"}),
			Options{ScopeKey: "SYSEXT_SCOPE", LevelKey: "SYSEXT_LEVEL", Scope: "system", Arch: "x86-64"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason, err := Validate(tc.ext, tc.host, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.ok || !strings.Contains(reason, tc.reason) || (ok && reason != "") {
				t.Errorf("Validate = %v %q, want %v containing %q", ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

func TestValidateNoHostID(t *testing.T) {
	_, _, err := Validate(map[string]string{"ID": "_any"}, Host{}, Options{})
	if !errors.Is(err, ErrNoHostID) {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadHost(t *testing.T) {
	root := t.TempDir()
	open := func(p string) (*os.File, error) { return os.Open(filepath.Join(root, p)) }
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadHost(open, ""); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("empty root: err = %v", err)
	}
	write("usr/lib/os-release", "ID=usr\nVERSION_ID=2\n")
	h, err := LoadHost(open, "")
	if err != nil || h.ID != "usr" || h.Path != "/usr/lib/os-release" {
		t.Fatalf("usr/lib: %+v %v", h, err)
	}
	write("etc/os-release", "ID=etc\nID_LIKE=\"a b\"\nCONFEXT_LEVEL=3\n")
	h, err = LoadHost(open, "")
	if err != nil || h.ID != "etc" || len(h.IDLike) != 2 || h.Level("CONFEXT_LEVEL") != "3" || h.ConfextLevel != "3" || h.VersionID != "" {
		t.Fatalf("etc wins: %+v %v", h, err)
	}
	write("etc/os-release", "NAME=x\n")
	if _, err := LoadHost(open, ""); err == nil || !strings.Contains(err.Error(), "ID") {
		t.Fatalf("empty ID: err = %v", err)
	}
	write("custom", "ID=custom\n")
	if h, err := LoadHost(open, "/custom"); err != nil || h.ID != "custom" {
		t.Fatalf("override: %+v %v", h, err)
	}
}

func TestArchitectureFromUname(t *testing.T) {
	for m, want := range map[string]string{"x86_64": "x86-64", "aarch64": "arm64", "i686": "x86", "armv7l": "arm", "ppc64le": "ppc64-le", "riscv64": "riscv64", "weird": ""} {
		if got := ArchitectureFromUname(m); got != want {
			t.Errorf("%s: got %q want %q", m, got, want)
		}
	}
	if UnameArchitecture() == "" {
		t.Error("UnameArchitecture is empty on this machine")
	}
}

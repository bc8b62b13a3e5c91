package vpick

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestPickNames(t *testing.T) {
	// The cases are written for x86-64 (secondary x86, arm64 foreign);
	// on arm64 the names swap (secondary arm, x86-64 foreign), so both
	// architectures Flatcar ships run every case.
	arch := strings.NewReplacer()
	switch runtime.GOARCH {
	case "amd64":
	case "arm64":
		arch = strings.NewReplacer("_x86-64.", "_arm64.", "_arm64.", "_x86-64.", "_x86.", "_arm.", "x86-64", "arm64", "arm64", "x86-64")
	default:
		t.Skipf("cases written for amd64 and arm64, not %s", runtime.GOARCH)
	}
	raw := Filter{Basename: "foo", Suffix: ".raw"}
	for _, tc := range []struct {
		name    string
		entries []string
		f       Filter
		want    string // "" = nothing
		version string
	}{
		{"newest version", []string{"foo_1.raw", "foo_1.10.raw", "foo_1.9.raw"}, raw, "foo_1.10.raw", "1.10"},
		{"prerelease older", []string{"foo_2~rc1.raw", "foo_1.raw"}, raw, "foo_1.raw", "1"},
		{"other names and suffixes ignored", []string{"bar_9.raw", "foo_9.img", "foo9.raw", "foo_.raw", "foo.raw", "foo_1.raw"}, raw, "foo_1.raw", "1"},
		{"empty dir", nil, raw, "", ""},
		{"native arch beats secondary", []string{"foo_1_x86.raw", "foo_1_x86-64.raw"}, raw, "foo_1_x86-64.raw", "1"},
		{"newer version beats arch preference", []string{"foo_1_x86-64.raw", "foo_2_x86.raw"}, raw, "foo_2_x86.raw", "2"},
		{"arch-less last resort", []string{"foo_1.raw", "foo_1_x86-64.raw"}, raw, "foo_1_x86-64.raw", "1"},
		{"foreign arch skipped", []string{"foo_5_arm64.raw", "foo_1.raw"}, raw, "foo_1.raw", "1"},
		{"explicit arch", []string{"foo_5_arm64.raw", "foo_6_x86-64.raw"}, Filter{Basename: "foo", Suffix: ".raw", Arch: "arm64"}, "foo_5_arm64.raw", "5"},
		{"unknown arch word is chopped", []string{"foo_1_2.raw"}, raw, "foo_1_2.raw", "1"},
		{"tries left zero deprioritised", []string{"foo_2+0.raw", "foo_1+3.raw"}, raw, "foo_1+3.raw", "1"},
		{"tries left zero deprioritised, done", []string{"foo_2+0-3.raw", "foo_1.raw"}, raw, "foo_1.raw", "1"},
		{"only exhausted entry still picked", []string{"foo_2+0-3.raw"}, raw, "foo_2+0-3.raw", "2"},
		{"no counter beats counter at same version", []string{"foo_1+2.raw", "foo_1.raw"}, raw, "foo_1.raw", "1"},
		{"more tries left wins", []string{"foo_1+1.raw", "foo_1+2.raw"}, raw, "foo_1+2.raw", "1"},
		{"fewer tries done wins", []string{"foo_1+1-3.raw", "foo_1+1-1.raw"}, raw, "foo_1+1-1.raw", "1"},
		{"bad tries suffix stays in version", []string{"foo_1+x.raw"}, raw, "foo_1+x.raw", "1+x"},
		{"invalid version char", []string{"foo_1~rc.raw", "foo_0.raw"}, raw, "foo_0.raw", "0"},
		{"directory .v without suffix", []string{"foo_1", "foo_2"}, Filter{Basename: "foo"}, "foo_2", "2"},
		{"class suffix", []string{"foo_1.confext.raw", "foo_2.raw"}, Filter{Basename: "foo", Suffix: ".confext.raw"}, "foo_1.confext.raw", "1"},
		{"equal versions: larger name", []string{"foo_01.raw", "foo_1.raw"}, raw, "foo_1.raw", "1"},
	} {
		for i, e := range tc.entries {
			tc.entries[i] = arch.Replace(e)
		}
		tc.want, tc.f.Arch = arch.Replace(tc.want), arch.Replace(tc.f.Arch)
		t.Run(tc.name, func(t *testing.T) {
			r, ok := PickNames(tc.entries, tc.f)
			if ok != (tc.want != "") || r.Name != tc.want || r.Version != tc.version {
				t.Errorf("got %+v ok=%v, want %q version %q", r, ok, tc.want, tc.version)
			}
		})
	}
}

func TestPickReadsDirectory(t *testing.T) {
	d := t.TempDir()
	for _, n := range []string{"app_1.0.raw", "app_1.2.raw", "app_1.2~rc1.raw", ".hidden", "app_1.1.raw"} {
		if err := os.WriteFile(filepath.Join(d, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, ok, err := Pick(f, Filter{Basename: "app", Suffix: ".raw"})
	if err != nil || !ok || r.Name != "app_1.2.raw" || r.TriesLeft != NoTries {
		t.Fatalf("Pick = %+v %v %v", r, ok, err)
	}
}

func TestVersionIsValid(t *testing.T) {
	for s, want := range map[string]bool{"": false, "0": true, "999999.5": true, "6.2.12-300.fc38.x86_64": true, "1~rc": false, "a/b": false, "..": false, "1,2+3": true} {
		if got := VersionIsValid(s); got != want {
			t.Errorf("VersionIsValid(%q) = %v", s, got)
		}
	}
}

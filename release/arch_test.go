package release

import (
	"runtime"
	"testing"
)

// TestFlatcarArches checks every column of the architecture table for the
// two architectures Flatcar ships (issue 8 item 10): the same name comes
// from the kernel's machine string and from Go's GOARCH, and it is the
// name systemd uses in ARCHITECTURE= and vpick names.
func TestFlatcarArches(t *testing.T) {
	for _, tc := range []struct{ goarch, uname, name string }{
		{"amd64", "x86_64", "x86-64"},
		{"arm64", "aarch64", "arm64"},
	} {
		if got := ArchitectureFromGo(tc.goarch); got != tc.name {
			t.Errorf("ArchitectureFromGo(%s) = %q, want %q", tc.goarch, got, tc.name)
		}
		if got := ArchitectureFromUname(tc.uname); got != tc.name {
			t.Errorf("ArchitectureFromUname(%s) = %q, want %q", tc.uname, got, tc.name)
		}
	}
	for _, tc := range []struct{ uname, name string }{
		{"armv7l", "arm"}, {"armv7b", "arm-be"}, {"i686", "x86"}, {"ppc64le", "ppc64-le"}, {"unknown", ""},
	} {
		if got := ArchitectureFromUname(tc.uname); got != tc.name {
			t.Errorf("ArchitectureFromUname(%s) = %q, want %q", tc.uname, got, tc.name)
		}
	}
	if ArchitectureFromGo("wasm") != "" {
		t.Error("a GOARCH without a systemd name mapped to one")
	}
}

// TestArchTableUnique: no name, machine string or GOARCH appears twice.
func TestArchTableUnique(t *testing.T) {
	names, unames, goarches := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, a := range Arches {
		if names[a.Name] {
			t.Errorf("name %s twice", a.Name)
		}
		names[a.Name] = true
		for _, u := range a.Uname {
			if unames[u] {
				t.Errorf("uname %s twice", u)
			}
			unames[u] = true
		}
		if a.GoArch != "" {
			if goarches[a.GoArch] {
				t.Errorf("GOARCH %s twice", a.GoArch)
			}
			goarches[a.GoArch] = true
		}
	}
}

// TestNativeIsUname: on amd64 and arm64 the binary's architecture is the
// kernel's (under qemu-user too, which reports the emulated machine), so
// dissection and ARCHITECTURE= validation agree.
func TestNativeIsUname(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		return
	}
	if n, u := NativeArchitecture(), UnameArchitecture(); n != u || n == "" {
		t.Fatalf("NativeArchitecture %q, UnameArchitecture %q", n, u)
	}
}

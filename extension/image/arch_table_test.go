package image

import (
	"testing"

	"github.com/ext-setup-root/ext-setup-root/release"
)

// TestFlatcarArchPartitionTypes: amd64 and arm64, named through the one
// table of architecture names (release.Arches), both have their six
// partition types, distinct from each other's, and Designator maps each
// back (issue 8 item 10).
func TestFlatcarArchPartitionTypes(t *testing.T) {
	seen := map[string]string{}
	for _, goarch := range []string{"amd64", "arm64"} {
		name := release.ArchitectureFromGo(goarch)
		ty, ok := TypesFor(name)
		if !ok {
			t.Fatalf("no partition types for %s (%s)", name, goarch)
		}
		for d, g := range map[string]string{
			"root": ty.Root, "root-verity": ty.RootVerity, "root-verity-sig": ty.RootVeritySig,
			"usr": ty.Usr, "usr-verity": ty.UsrVerity, "usr-verity-sig": ty.UsrVeritySig,
		} {
			if g == "" {
				t.Errorf("%s: no %s type", name, d)
			}
			if other, dup := seen[g]; dup {
				t.Errorf("%s %s type %s is also %s", name, d, g, other)
			}
			seen[g] = name + " " + d
			if got := Designator(name, g); got != d {
				t.Errorf("Designator(%s, %s) = %q, want %q", name, g, got, d)
			}
		}
	}
	if NativeArchitecture() != release.NativeArchitecture() || NativeArchitecture() == "" {
		t.Fatalf("NativeArchitecture %q", NativeArchitecture())
	}
}

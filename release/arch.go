package release

import (
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Arch is one architecture: systemd's name for it (architecture.h, what
// ARCHITECTURE= in an extension-release file and the _ARCH part of a vpick
// name use), the uname(2) machine strings of its kernels, Go's GOARCH and
// its secondary architecture (whose images it runs too; systemd's
// ARCHITECTURE_SECONDARY). extension/image keys its table of partition
// type GUIDs by Name; vpick takes its architecture names and preference
// order from here.
type Arch struct {
	Name      string
	Uname     []string
	GoArch    string // "" when Go has no port
	Secondary string
}

// Arches is the one table of architecture names. amd64 and arm64, the
// architectures Flatcar ships, are tested for every column (arch_test.go,
// and extension/image for their partition types).
var Arches = []Arch{
	{"x86-64", []string{"x86_64"}, "amd64", "x86"},
	{"x86", []string{"i386", "i486", "i586", "i686"}, "386", ""},
	{"arm64", []string{"aarch64"}, "arm64", "arm"},
	{"arm64-be", []string{"aarch64_be"}, "arm64be", ""},
	{"arm", nil, "arm", ""},      // uname: arm* (armv7l, ...), see ArchitectureFromUname
	{"arm-be", nil, "armbe", ""}, // uname: arm*b
	{"ppc64-le", []string{"ppc64le"}, "ppc64le", ""},
	{"ppc64", []string{"ppc64"}, "ppc64", "ppc"},
	{"ppc-le", []string{"ppcle"}, "", ""},
	{"ppc", []string{"ppc"}, "", ""},
	{"s390x", []string{"s390x"}, "s390x", "s390"},
	{"s390", []string{"s390"}, "", ""},
	{"riscv32", []string{"riscv32"}, "", ""},
	{"riscv64", []string{"riscv64"}, "riscv64", ""},
	{"loongarch64", []string{"loongarch64"}, "loong64", ""},
	{"mips64", []string{"mips64"}, "mips64", ""},
	{"mips64-le", nil, "mips64le", ""},
	{"mips", []string{"mips"}, "mips", ""},
	{"mips-le", nil, "mipsle", ""},
	{"alpha", []string{"alpha"}, "", ""},
	{"arc", []string{"arc"}, "", ""},
	{"arc-be", nil, "", ""},
	{"cris", nil, "", ""},
	{"ia64", []string{"ia64"}, "", ""},
	{"m68k", []string{"m68k"}, "", ""},
	{"nios2", nil, "", ""},
	{"parisc64", []string{"parisc64"}, "", ""},
	{"parisc", []string{"parisc"}, "", ""},
	{"sh", []string{"sh"}, "", ""},
	{"sh64", nil, "", ""},
	{"sparc64", []string{"sparc64"}, "sparc64", ""},
	{"sparc", []string{"sparc"}, "", ""},
	{"tilegx", nil, "", ""},
}

// IsArchitecture reports whether name is one of systemd's architecture
// names.
func IsArchitecture(name string) bool {
	for _, a := range Arches {
		if a.Name == name {
			return true
		}
	}
	return false
}

// SecondaryArchitecture returns the secondary architecture of name, "" if
// it has none.
func SecondaryArchitecture(name string) string {
	for _, a := range Arches {
		if a.Name == name {
			return a.Secondary
		}
	}
	return ""
}

// ArchitectureFromUname maps a uname(2) machine string to systemd's
// architecture name. Unknown machines map to "".
func ArchitectureFromUname(machine string) string {
	for _, a := range Arches {
		for _, u := range a.Uname {
			if u == machine {
				return a.Name
			}
		}
	}
	switch {
	case strings.HasPrefix(machine, "arm") && strings.HasSuffix(machine, "b"):
		return "arm-be"
	case strings.HasPrefix(machine, "arm"):
		return "arm"
	}
	return ""
}

// ArchitectureFromGo maps a GOARCH to systemd's architecture name; ""
// when the table has none.
func ArchitectureFromGo(goarch string) string {
	for _, a := range Arches {
		if a.GoArch != "" && a.GoArch == goarch {
			return a.Name
		}
	}
	return ""
}

// NativeArchitecture is systemd's name for the architecture this binary
// was built for, as systemd's native_architecture() is the one it was
// compiled for (dissection prefers its partitions).
func NativeArchitecture() string { return ArchitectureFromGo(runtime.GOARCH) }

// UnameArchitecture returns systemd's name for the running kernel's
// architecture, like systemd's uname_architecture() (the kernel's, not the
// binary's: a 32-bit userspace on a 64-bit kernel reports the kernel).
func UnameArchitecture() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return ArchitectureFromUname(unix.ByteSliceToString(u.Machine[:]))
}

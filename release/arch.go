package release

import (
	"strings"

	"golang.org/x/sys/unix"
)

// ArchitectureFromUname maps a uname(2) machine string to systemd's
// architecture name (architecture.h), which is what ARCHITECTURE= in an
// extension-release file is compared with. Unknown machines map to "".
func ArchitectureFromUname(machine string) string {
	switch machine {
	case "x86_64":
		return "x86-64"
	case "i386", "i486", "i586", "i686":
		return "x86"
	case "aarch64":
		return "arm64"
	case "aarch64_be":
		return "arm64-be"
	case "ppc64le":
		return "ppc64-le"
	case "ppc64":
		return "ppc64"
	case "ppcle":
		return "ppc-le"
	case "ppc":
		return "ppc"
	case "s390x":
		return "s390x"
	case "s390":
		return "s390"
	case "riscv32":
		return "riscv32"
	case "riscv64":
		return "riscv64"
	case "loongarch64":
		return "loongarch64"
	case "mips64":
		return "mips64"
	case "mips":
		return "mips"
	case "alpha":
		return "alpha"
	case "ia64":
		return "ia64"
	case "parisc64":
		return "parisc64"
	case "parisc":
		return "parisc"
	case "sh":
		return "sh"
	case "sparc64":
		return "sparc64"
	case "sparc":
		return "sparc"
	case "m68k":
		return "m68k"
	case "arc":
		return "arc"
	}
	switch {
	case strings.HasPrefix(machine, "arm") && strings.HasSuffix(machine, "b"):
		return "arm-be"
	case strings.HasPrefix(machine, "arm"):
		return "arm"
	}
	return ""
}

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

package qemu

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// binfmtDir is where the kernel's binfmt_misc handlers are listed.
const binfmtDir = "/proc/sys/fs/binfmt_misc"

// arm64ELFMagic is the start of an arm64 ELF executable's header as
// binfmt_misc shows a handler's magic (ELFCLASS64, little endian,
// e_machine EM_AARCH64 at offset 18).
const arm64ELFMagic = "7f454c460201010000000000000000000200b700"

// binfmtArm64 reports whether the kernel runs arm64 executables through an
// enabled binfmt_misc handler with the F flag (interpreter opened at
// registration, so it works inside the dracut chroot of the arm64 root):
// scripts/lib/binfmt-arm64.sh registers one (qemu-aarch64), or a distribution's
// qemu-user-binfmt did.
func binfmtArm64() error {
	ents, err := os.ReadDir(binfmtDir)
	if err != nil {
		return fmt.Errorf("binfmt_misc: %w", err)
	}
	for _, e := range ents {
		if e.Name() == "register" || e.Name() == "status" {
			continue
		}
		f, err := os.Open(filepath.Join(binfmtDir, e.Name()))
		if err != nil {
			continue
		}
		ok := arm64Handler(f)
		f.Close()
		if ok {
			return nil
		}
	}
	return fmt.Errorf("no enabled binfmt_misc handler with flag F for arm64 ELF executables in %s", binfmtDir)
}

// arm64Handler parses one binfmt_misc handler file ("enabled",
// "interpreter ...", "flags: ...", "magic ...") and reports whether it is
// an enabled, fix-binary handler of arm64 ELF executables.
func arm64Handler(r io.Reader) bool {
	var enabled, fix, magic bool
	sc := bufio.NewScanner(io.LimitReader(r, 4096))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "enabled":
			enabled = true
		case strings.HasPrefix(l, "flags: "):
			fix = strings.Contains(strings.TrimPrefix(l, "flags: "), "F")
		case strings.HasPrefix(l, "magic "):
			magic = strings.HasPrefix(strings.TrimPrefix(l, "magic "), arm64ELFMagic)
		}
	}
	return enabled && fix && magic
}

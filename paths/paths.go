// Package paths holds every host path ext-setup-root touches outside the
// target root, in one place, so that tests can point them at temp dirs.
//
// Each variable has a default suitable for an initrd or a booted system.
// Two name our own configuration and can be set in production through the
// environment (Load): the state directory and the default target root. The
// others redirect what the kernel or the system provides (the kernel
// command line, the mount table, /dev, sysfs, the trusted certificates)
// and can be redirected only in a binary built for tests (-tags
// testhooks, LoadTestOverrides): an environment variable must never make
// the production binary read another command line or trust other
// certificates. Paths inside the target root are never listed here: they
// are resolved inside the root by file descriptor (see package rootfs).
package paths

import (
	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

var (
	// ProcCmdline is the kernel command line (EXT_SETUP_ROOT_PROC_CMDLINE).
	ProcCmdline = "/proc/cmdline"
	// ProcMountinfo is this process's mount table (EXT_SETUP_ROOT_PROC_MOUNTINFO).
	ProcMountinfo = "/proc/self/mountinfo"
	// ProcSelfStat is this process's status line (its start time, for the
	// start-up figure of the boot stages).
	ProcSelfStat = "/proc/self/stat"
	// DevKmsg is where log lines go when the journal is not reachable
	// (EXT_SETUP_ROOT_DEV_KMSG).
	DevKmsg = "/dev/kmsg"
	// ProcPrintkDevkmsg is the kernel's printk.devkmsg setting, which says
	// whether writes to DevKmsg are rate-limited
	// (EXT_SETUP_ROOT_PROC_PRINTK_DEVKMSG).
	ProcPrintkDevkmsg = "/proc/sys/kernel/printk_devkmsg"
	// SysDevBlock maps MAJ:MIN to block devices (EXT_SETUP_ROOT_SYS_DEV_BLOCK).
	SysDevBlock = "/sys/dev/block"
	// DevDir holds device nodes such as /dev/loop-control and
	// /dev/disk/by-partuuid (EXT_SETUP_ROOT_DEV).
	DevDir = "/dev"
	// StateDir holds ext-setup-root's own state outside the target root, such
	// as the extra identity of directory images used by refresh
	// (EXT_SETUP_ROOT_STATE_DIR). It lives under /run so that it is carried
	// across switch-root with /run and never persists across boots.
	StateDir = "/run/ext-setup-root"
	// Run is the runtime tmpfs; mount stages detached overlay layers in a
	// private tmpfs below it on kernels before 6.15.
	Run = "/run"
	// Sysroot is the default target root in the initrd (EXT_SETUP_ROOT_SYSROOT).
	Sysroot = "/sysroot"
	// TrustRoot is the root whose verity.d directories hold the
	// certificates trusted for root hash signatures: the running system's
	// own (the initrd's in the initrd), never the target root's, as
	// systemd 262 does (EXT_SETUP_ROOT_TRUST_ROOT).
	TrustRoot = "/"
	// PCRExtendSocket is systemd's Varlink service that extends TPM PCRs
	// and NvPCRs and writes the measurement log; a verity activation asks
	// it to measure, as systemd's own do (EXT_SETUP_ROOT_PCREXTEND_SOCKET).
	PCRExtendSocket = "/run/systemd/io.systemd.PCRExtend"
)

type override struct {
	env string
	v   *string
}

// Load applies the production settings EXT_SETUP_ROOT_STATE_DIR and
// EXT_SETUP_ROOT_SYSROOT. getenv is usually os.Getenv; tests pass their
// own.
func Load(getenv func(string) string) {
	apply(getenv, []override{
		{"EXT_SETUP_ROOT_STATE_DIR", &StateDir},
		{"EXT_SETUP_ROOT_SYSROOT", &Sysroot},
	})
}

// LoadTestOverrides applies the redirections of system paths that only a
// test binary honours: EXT_SETUP_ROOT_PROC_CMDLINE, _PROC_MOUNTINFO,
// _DEV_KMSG, _PROC_PRINTK_DEVKMSG, _SYS_DEV_BLOCK, _DEV, _TRUST_ROOT and _PCREXTEND_SOCKET. Only the testhooks build
// of the command calls it.
func LoadTestOverrides(getenv func(string) string) {
	apply(getenv, []override{
		{"EXT_SETUP_ROOT_PROC_CMDLINE", &ProcCmdline},
		{"EXT_SETUP_ROOT_PROC_MOUNTINFO", &ProcMountinfo},
		{"EXT_SETUP_ROOT_DEV_KMSG", &DevKmsg},
		{"EXT_SETUP_ROOT_PROC_PRINTK_DEVKMSG", &ProcPrintkDevkmsg},
		{"EXT_SETUP_ROOT_SYS_DEV_BLOCK", &SysDevBlock},
		{"EXT_SETUP_ROOT_DEV", &DevDir},
		{"EXT_SETUP_ROOT_TRUST_ROOT", &TrustRoot},
		{"EXT_SETUP_ROOT_PCREXTEND_SOCKET", &PCRExtendSocket},
	})
}

func apply(getenv func(string) string, os []override) {
	for _, o := range os {
		if s := getenv(o.env); s != "" {
			*o.v = s
		}
	}
}

// InInitrd reports whether this process runs in an initrd (the host's
// /etc/initrd-release exists), which decides the default --root (/sysroot)
// of the boot pipeline. An error answers "no": outside an initrd the
// caller's default is the booted system's.
func InInitrd() bool {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	ok, _ := sysx.IsInitrd(fd)
	return ok
}

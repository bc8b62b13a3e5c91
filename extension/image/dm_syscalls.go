package image

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
)

// This file holds every system call the device-mapper and loop set-up of
// this package makes. Each retries on EINTR (Go's asynchronous preemption
// can interrupt slow calls, golang/go#40846) and returns an error that
// names the operation and the device, and unwraps to the errno, so
// errors.Is(err, unix.EBUSY) works.

// DMError is a failed device-mapper or module operation.
type DMError struct {
	Op     string // "DM_DEV_CREATE", "DM_TABLE_LOAD", "finit_module", ...
	Device string // dm name, device node or module
	Detail string // table, flags or path, when it helps
	Err    error
}

func (e *DMError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s %s [%s]: %v", e.Op, e.Device, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Op, e.Device, e.Err)
}

func (e *DMError) Unwrap() error { return e.Err }

// retry is the module's one EINTR retry (internal/sysx).
var retry = sysx.Retry

// ioctlBuf issues a device-mapper ioctl whose argument is buf (a struct
// dm_ioctl followed by its payload; the kernel writes results into it).
func ioctlBuf(fd int, req uint, buf []byte) error {
	return retry(func() error {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
		if e != 0 {
			return e
		}
		return nil
	})
}

// addUserKey adds a "user" key with the signature to the process keyring,
// where the kernel's dm-verity finds it by description while it loads a
// table with root_hash_sig_key_desc (request_key searches the caller's
// keyrings). It returns the key serial.
func addUserKey(desc string, payload []byte) (int, error) {
	var id int
	err := retry(func() (err error) {
		id, err = unix.AddKey("user", desc, payload, unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	})
	if err != nil {
		return 0, &DMError{Op: "add_key", Device: desc, Err: err}
	}
	return id, nil
}

// dropKey unlinks the key from the process keyring once the table is
// loaded (the kernel keeps its own copy of the signature).
func dropKey(id int) error {
	err := retry(func() error {
		_, err := unix.KeyctlInt(unix.KEYCTL_UNLINK, id, unix.KEY_SPEC_PROCESS_KEYRING, 0, 0)
		return err
	})
	if err != nil {
		return &DMError{Op: "keyctl unlink", Device: fmt.Sprint(id), Err: err}
	}
	return nil
}

// finitModule loads the kernel module in f; compressed modules (.ko.xz,
// .ko.zst) are decompressed by the kernel (MODULE_INIT_COMPRESSED_FILE,
// Linux 5.17+). EEXIST (already loaded) is success.
func finitModule(f *os.File, compressed bool) error {
	flags := 0
	if compressed {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	err := retry(func() error { return unix.FinitModule(int(f.Fd()), "", flags) })
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return &DMError{Op: "finit_module", Device: f.Name(), Err: err}
	}
	return nil
}

// openDev opens a device node read-only (O_CLOEXEC, O_NONBLOCK as block
// device probes do).
func openDev(path string, flags int) (*os.File, error) {
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Open(path, flags|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// fstatDev returns the stat of an open device.
func fstatDev(f *os.File) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := retry(func() error { return unix.Fstat(int(f.Fd()), &st) })
	if err != nil {
		return st, &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return st, nil
}

// blkGetDiskSeq returns the disk sequence number of a block device
// (BLKGETDISKSEQ, Linux 5.15+): unique per attachment of a loop device.
func blkGetDiskSeq(f *os.File) (uint64, error) {
	var seq uint64
	err := retry(func() error {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(unix.BLKGETDISKSEQ), uintptr(unsafe.Pointer(&seq)))
		if e != 0 {
			return e
		}
		return nil
	})
	if err != nil {
		return 0, &DMError{Op: "BLKGETDISKSEQ", Device: f.Name(), Err: err}
	}
	return seq, nil
}

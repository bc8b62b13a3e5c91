package mount

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/paths"
)

// LoopOptions configures a loop device.
type LoopOptions struct {
	ReadOnly  bool
	Autoclear bool // the kernel detaches the device when its last user closes it
	PartScan  bool // the kernel scans the partition table and creates loopNpM
	Offset    uint64
	SizeLimit uint64 // 0: up to the end of the backing file
}

// Loop is an attached loop device, held open by File.
//
// Gotcha: with Autoclear, the device is torn down as soon as its last
// opener goes away. Keep File open until the mount that uses the device
// exists (FSCONFIG_CMD_CREATE returned, i.e. FSContext.Mount returned):
// closing it earlier makes the mount fail with EIO (squashfs) or EINVAL
// (erofs). After that the superblock holds the device and Close is enough;
// the device disappears with the last unmount.
type Loop struct {
	Path string
	File *os.File
	opts LoopOptions
}

// loopAttempts bounds the retries of the GET_FREE/CONFIGURE race.
const loopAttempts = 40

// AttachLoop attaches backing to a free loop device with LOOP_CONFIGURE
// (one ioctl, so the device is never half set up). Another process can take
// the device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE (EBUSY) or the
// node can be momentarily missing (ENXIO, ENOENT); those races are retried
// a bounded number of times with jittered sleeps. backing may be closed
// once AttachLoop returns.
func AttachLoop(backing *os.File, o LoopOptions) (*Loop, error) {
	ctl, err := os.OpenFile(filepath.Join(paths.DevDir, "loop-control"), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	cfg.Info.Offset = o.Offset
	cfg.Info.Sizelimit = o.SizeLimit
	if o.ReadOnly {
		cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	if o.Autoclear {
		cfg.Info.Flags |= unix.LO_FLAGS_AUTOCLEAR
	}
	if o.PartScan {
		cfg.Info.Flags |= unix.LO_FLAGS_PARTSCAN
	}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], backing.Name())
	defer runtime.KeepAlive(backing)

	var lastErr error
	for attempt := 0; attempt < loopAttempts; attempt++ {
		if attempt > 0 {
			// Jitter so that racing attachers (udev workers, systemd,
			// another ext-setup-root) do not collide again in lockstep.
			time.Sleep(time.Duration(rand.IntN(1000*min(attempt, 10))+100) * time.Microsecond)
		}
		n, err := loopGetFree(int(ctl.Fd()))
		if err != nil {
			return nil, &Error{Op: "loop get free", Source: backing.Name(), Target: ctl.Name(), Err: err}
		}
		dev := filepath.Join(paths.DevDir, "loop"+strconv.Itoa(n))
		f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
				lastErr = err
				continue
			}
			return nil, err
		}
		err = loopConfigure(int(f.Fd()), &cfg)
		if err == nil {
			return &Loop{Path: dev, File: f, opts: o}, nil
		}
		f.Close()
		lastErr = &Error{Op: "loop configure", Source: backing.Name(), Target: dev,
			Data: fmt.Sprintf("offset=%d sizelimit=%d flags=%#x", o.Offset, o.SizeLimit, cfg.Info.Flags), Err: err}
		if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENXIO) {
			return nil, lastErr
		}
	}
	return nil, fmt.Errorf("attach loop device for %s: gave up after %d attempts: %w", backing.Name(), loopAttempts, lastErr)
}

// Close releases the loop device. Without Autoclear it detaches the backing
// file (LOOP_CLR_FD; the kernel defers that while the device is mounted);
// with Autoclear closing the fd is all that is needed.
func (l *Loop) Close() error {
	if l.File == nil {
		return nil
	}
	var err error
	if !l.opts.Autoclear {
		err = loopClearFd(int(l.File.Fd()))
		if err != nil {
			err = &Error{Op: "loop clear", Target: l.Path, Err: err}
		}
	}
	if cerr := l.File.Close(); err == nil {
		err = cerr
	}
	l.File = nil
	return err
}

package mount

import (
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"

	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// FSContext is an open filesystem context (fsopen(2)) being configured. It
// exists so that every parameter is passed separately (no option-string
// escaping, no page-size limit) and so that a failure can be explained with
// the kernel's own messages.
type FSContext struct {
	fd     int
	fstype string
	source string
}

// NewFS opens a filesystem context for fstype and, if source is not empty,
// sets its "source" parameter (a device path, or a name shown in mountinfo
// for virtual filesystems such as overlay).
func NewFS(fstype, source string) (*FSContext, error) {
	fd, err := Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	c := &FSContext{fd: fd, fstype: fstype}
	if source != "" {
		if err := c.SetString("source", source); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Fd returns the fs-context file descriptor, for parameters this type does
// not wrap.
func (c *FSContext) Fd() int { return c.fd }

// SetString sets parameter k to the string v.
func (c *FSContext) SetString(k, v string) error {
	if k == "source" {
		c.source = v
	}
	return c.wrap(FsconfigString(c.fd, k, v))
}

// SetFlag sets the flag parameter k.
func (c *FSContext) SetFlag(k string) error {
	return c.wrap(FsconfigFlag(c.fd, k))
}

// SetFd sets parameter k to the open file descriptor fd. The kernel takes
// its own reference, so the caller may close fd afterwards.
func (c *FSContext) SetFd(k string, fd int) error {
	return c.wrap(FsconfigFd(c.fd, k, fd))
}

// Mount creates the superblock (FSCONFIG_CMD_CREATE) and returns a detached
// mount of it (fsmount with FSMOUNT_CLOEXEC and MOUNT_ATTR_* attrs). The
// mount is not visible anywhere until attached (Attach); closing the
// returned file without attaching it discards the mount.
//
// MOUNT_ATTR_RDONLY only makes the mount read-only; the superblock still
// opens its block device for writing unless the context has the flag "ro"
// (SetFlag("ro")). On a read-only device, such as a loop attached with
// ReadOnly, the create fails with EACCES without it.
func (c *FSContext) Mount(attrs uint64) (*os.File, error) {
	if err := c.wrap(FsconfigCreate(c.fd)); err != nil {
		return nil, err
	}
	mfd, err := Fsmount(c.fd, unix.FSMOUNT_CLOEXEC, int(attrs))
	if err != nil {
		return nil, c.wrap(err)
	}
	return os.NewFile(uintptr(mfd), fmt.Sprintf("%s mount of %s", c.fstype, c.source)), nil
}

// Close releases the filesystem context. A mount made from it stays valid.
func (c *FSContext) Close() error {
	if c.fd < 0 {
		return nil
	}
	// close(2) is not retried on EINTR: Linux frees the fd either way.
	err := unix.Close(c.fd)
	c.fd = -1
	if err != nil {
		return &Error{Op: "close fs context", FSType: c.fstype, Source: c.source, Err: err}
	}
	return nil
}

// wrap adds the filesystem type, source and the kernel's messages to a
// failure of this context.
func (c *FSContext) wrap(err error) error {
	if err == nil {
		return nil
	}
	var me *Error
	if errors.As(err, &me) {
		me.FSType = c.fstype
		if me.Source == "" {
			me.Source = c.source
		}
		me.Messages = append(me.Messages, c.messages()...)
	}
	return err
}

// messages drains the log the kernel keeps in the fs context: each read
// returns one line such as "e overlay: failed to resolve 'x': -2"; ENODATA
// ends it. See fsopen(2), "Message retrieval interface".
func (c *FSContext) messages() []string {
	var out []string
	buf := make([]byte, 4096)
	for i := 0; i < 64; i++ {
		n, err := sysx.RetryValue(func() (int, error) { return unix.Read(c.fd, buf) })
		if err != nil || n <= 0 {
			break
		}
		out = append(out, strings.TrimRight(string(buf[:n]), "\n"))
	}
	return out
}

package rootfs

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// This file copies a regular file's data and extended attributes for a
// move across file systems (copyFile), as cp -a does: holes stay holes
// and the xattrs the target accepts arrive.
//
// A sparse DDI (a 256 MiB image with a few MiB written) would otherwise
// arrive fully allocated, and can fill a small OEM partition (ENOSPC);
// its user.* xattrs (user.verity.roothash) and security.* labels would be
// gone.

// copyBufSize is the buffer of the pread/pwrite fallback.
const copyBufSize = 1 << 20

// copyData copies the size bytes of s to d (a new, empty file), writing
// only the source's data extents (SEEK_DATA/SEEK_HOLE) and extending d to
// size, so holes stay holes. A file system without SEEK_DATA counts as
// one extent.
func copyData(s, d *os.File, size int64) error {
	sfd, dfd := int(s.Fd()), int(d.Fd())
	c := extentCopier{sfd: sfd, dfd: dfd, useRange: true}
	for off := int64(0); off < size; {
		start, err := lseek(sfd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO):
			start = size // only a hole is left
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
			start = off // no SEEK_DATA: copy everything
		case err != nil:
			return fmt.Errorf("seek data: %w", err)
		}
		if start >= size {
			break
		}
		end, err := lseek(sfd, start, unix.SEEK_HOLE)
		switch {
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
			end = size
		case err != nil:
			return fmt.Errorf("seek hole: %w", err)
		}
		end = min(end, size)
		if end <= start {
			return fmt.Errorf("seek hole at %d returned %d: %w", start, end, unix.EIO)
		}
		if err := c.copy(start, end); err != nil {
			return err
		}
		off = end
	}
	return ftruncate(dfd, size)
}

// extentCopier copies byte ranges at the same offsets, in the kernel
// (copy_file_range) while it can, else with pread/pwrite.
type extentCopier struct {
	sfd, dfd int
	useRange bool
	buf      []byte
}

// copy copies [start, end) of the source to the same range of the
// destination.
func (c *extentCopier) copy(start, end int64) error {
	for c.useRange && start < end {
		soff, doff := start, start
		n, err := copyFileRange(c.sfd, &soff, c.dfd, &doff, int(min(end-start, 1<<30)))
		switch {
		case err == nil && n > 0:
			start += int64(n)
			continue
		case err == nil: // the source ended early (shrunk under us)
			return fmt.Errorf("copy_file_range at %d: %w", start, io.ErrUnexpectedEOF)
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS),
			errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EBADF):
			c.useRange = false // not across these file systems: copy here
		default:
			return err
		}
	}
	if c.buf == nil && start < end {
		c.buf = make([]byte, copyBufSize)
	}
	for start < end {
		n, err := pread(c.sfd, c.buf[:min(end-start, int64(len(c.buf)))], start)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("read at %d: %w", start, io.ErrUnexpectedEOF)
		}
		for w := 0; w < n; {
			m, err := pwrite(c.dfd, c.buf[w:n], start+int64(w))
			if err != nil {
				return err
			}
			w += m
		}
		start += int64(n)
	}
	return nil
}

// Bounds of an xattr copy: the kernel's own limits (XATTR_LIST_MAX,
// XATTR_SIZE_MAX), so a name list or a value never sizes a larger buffer.
const (
	xattrListMax = 64 << 10
	xattrSizeMax = 64 << 10
)

// copyXattrs copies the extended attributes of sfd to dfd. A name the
// target refuses (a namespace it does not support, one the caller may not
// set, a value too large for it) is skipped, as cp -a skips it; other
// errors (EIO, ENOSPC) fail the copy. It returns the names skipped.
func copyXattrs(sfd, dfd int) ([]string, error) {
	names, err := listXattrs(sfd)
	if err != nil {
		return nil, err
	}
	var skipped []string
	val := make([]byte, xattrSizeMax)
	for _, name := range names {
		n, err := fgetxattr(sfd, name, val)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return skipped, fmt.Errorf("getxattr %s: %w", name, err)
		}
		err = fsetxattr(dfd, name, val[:n])
		switch {
		case err == nil:
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES), errors.Is(err, unix.EOPNOTSUPP),
			errors.Is(err, unix.E2BIG), errors.Is(err, unix.ERANGE), errors.Is(err, unix.EINVAL):
			skipped = append(skipped, name)
		default:
			return skipped, fmt.Errorf("setxattr %s: %w", name, err)
		}
	}
	return skipped, nil
}

// listXattrs returns the xattr names of fd (none where the file system
// has no xattrs).
func listXattrs(fd int) ([]string, error) {
	buf := make([]byte, xattrListMax)
	n, err := flistxattr(fd, buf)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr: %w", err)
	}
	var names []string
	for _, b := range splitNul(buf[:n]) {
		names = append(names, string(b))
	}
	return names, nil
}

// splitNul splits a NUL-terminated name list.
func splitNul(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

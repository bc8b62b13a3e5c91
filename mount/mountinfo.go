package mount

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/paths"
)

// Info is one line of /proc/PID/mountinfo (see proc_pid_mountinfo(5)).
type Info struct {
	ID, Parent   int
	Major, Minor uint32
	Root         string // root of the mount within its filesystem
	Mountpoint   string
	Options      string // per-mount options
	Optional     string // optional fields, e.g. "shared:1 master:2", space separated
	FSType       string
	Source       string
	SuperOptions string
}

// ParseMountinfo parses mountinfo text. Paths are unescaped (\040 space,
// \011 tab, \012 newline, \134 backslash).
func ParseMountinfo(r io.Reader) ([]Info, error) {
	var out []Info
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 10 || sep < 0 || len(f) < sep+4 {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n, line)
		}
		var in Info
		var err error
		if in.ID, err = strconv.Atoi(f[0]); err != nil {
			return nil, fmt.Errorf("mountinfo line %d: mount id: %w", n, err)
		}
		if in.Parent, err = strconv.Atoi(f[1]); err != nil {
			return nil, fmt.Errorf("mountinfo line %d: parent id: %w", n, err)
		}
		maj, min, ok := strings.Cut(f[2], ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("mountinfo line %d: bad major:minor %q", n, f[2])
		}
		in.Major, in.Minor = uint32(ma), uint32(mi)
		in.Root = unescape(f[3])
		in.Mountpoint = unescape(f[4])
		in.Options = f[5]
		in.Optional = strings.Join(f[6:sep], " ")
		in.FSType = unescape(f[sep+1])
		in.Source = unescape(f[sep+2])
		in.SuperOptions = strings.Join(f[sep+3:], " ")
		out = append(out, in)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// unescape undoes the kernel's octal escaping of " \t\n\\" in mountinfo.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ReadMountinfo reads and parses paths.ProcMountinfo. The kernel only
// guarantees a consistent table within one read(2) (moby/sys#161,
// kubernetes#103754), and a table with long lines (an overlay with many
// layers lists them all) cannot be read in one, so the file is read whole
// until two consecutive reads agree, at most mountinfoReads times.
func ReadMountinfo() ([]Info, error) {
	prev, err := os.ReadFile(paths.ProcMountinfo)
	if err != nil {
		return nil, err
	}
	for i := 1; i < mountinfoReads; i++ {
		cur, err := os.ReadFile(paths.ProcMountinfo)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(prev, cur) {
			break
		}
		prev = cur
	}
	return ParseMountinfo(bytes.NewReader(prev))
}

// mountinfoReads bounds ReadMountinfo on a mount table that keeps changing;
// the last read is used then.
const mountinfoReads = 5

// IsMountPoint reports whether f (any fd, including O_PATH) refers to the
// root of a mount. It asks statx for STATX_ATTR_MOUNT_ROOT and, if the
// kernel does not report that attribute, compares the mount ids of f and
// its parent ".." (directories only); the root of the namespace (its own
// parent) counts as a mount point.
func IsMountPoint(f *os.File) (bool, error) {
	fd := int(f.Fd())
	defer runtime.KeepAlive(f)
	var self unix.Statx_t
	err := statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_INO, &self)
	if err != nil {
		return false, &os.PathError{Op: "statx", Path: f.Name(), Err: err}
	}
	if self.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return self.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	return mountPointByParent(fd, f.Name(), &self)
}

// mountPointByParent is IsMountPoint for kernels without
// STATX_ATTR_MOUNT_ROOT (before 5.8): f is a mount root if its parent ".."
// is on another mount, or if it is its own parent (the namespace root).
// self must hold f's statx with STATX_MNT_ID|STATX_INO.
func mountPointByParent(fd int, name string, self *unix.Statx_t) (bool, error) {
	var parent unix.Statx_t
	err := statx(fd, "..", unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID|unix.STATX_INO, &parent)
	if err != nil {
		return false, &os.PathError{Op: "statx", Path: name + "/..", Err: err}
	}
	if self.Mnt_id != parent.Mnt_id {
		return true, nil
	}
	same := self.Ino == parent.Ino && self.Dev_major == parent.Dev_major && self.Dev_minor == parent.Dev_minor
	return same, nil
}

package systemd262

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MountEntry is one line of /proc/self/mountinfo, the fields the
// differential tests compare.
type MountEntry struct {
	ID, Parent   int
	Dev          string // MAJ:MIN
	Root         string
	MountPoint   string
	Options      string // per-mount options (rw,nosuid,...)
	FSType       string
	Source       string
	SuperOptions string
}

// unescapeMountinfo undoes the octal escapes (\040 etc.) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
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

// ReadMountinfo parses /proc/self/mountinfo (a test helper: the product's
// parser lives in package mount).
func ReadMountinfo() ([]MountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []MountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 6 || len(fields) < sep+3 {
			continue
		}
		id, _ := strconv.Atoi(fields[0])
		parent, _ := strconv.Atoi(fields[1])
		e := MountEntry{
			ID: id, Parent: parent, Dev: fields[2],
			Root: unescapeMountinfo(fields[3]), MountPoint: unescapeMountinfo(fields[4]),
			Options: fields[5], FSType: fields[sep+1], Source: unescapeMountinfo(fields[sep+2]),
		}
		if len(fields) > sep+3 {
			e.SuperOptions = fields[sep+3]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

// MountsAt returns the mounts whose mount point is p or below p, in
// mountinfo order.
func MountsAt(p string) []MountEntry {
	all, _ := ReadMountinfo()
	var out []MountEntry
	for _, m := range all {
		if m.MountPoint == p || strings.HasPrefix(m.MountPoint, p+"/") {
			out = append(out, m)
		}
	}
	return out
}

// UniqueMountID returns the never-reused mount id (STATX_MNT_ID_UNIQUE) of
// the mount holding p; 0 if the kernel does not provide it. Comparing it
// before and after a refresh tells whether the overlay was replaced.
func UniqueMountID(p string) (uint64, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID_UNIQUE, &st); err != nil {
		return 0, &os.PathError{Op: "statx", Path: p, Err: err}
	}
	if st.Mask&unix.STATX_MNT_ID_UNIQUE == 0 {
		return 0, nil
	}
	return st.Mnt_id, nil
}

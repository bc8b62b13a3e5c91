package mount

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Error describes a failed mount system call with everything needed to
// understand it from a log line alone. It unwraps to the errno (or to a
// sentinel such as ErrBeneathUnsupported and the errno).
type Error struct {
	Op     string // system call or step, e.g. "fsconfig", "move_mount"
	Source string // source path, device or "fd N"
	Target string // target path or "fd N"
	FSType string
	Flags  uint64 // flags of the call, printed by name
	Data   string // parameter or mount data
	Err    error
	// Messages are the kernel's fs-context log lines ("e ...", "w ...")
	// read back after a failed fsconfig, often the only precise reason.
	Messages []string
}

// Error formats e as "op fstype source -> target (flags) [data]: errno: kernel messages".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.FSType != "" {
		fmt.Fprintf(&b, " %s", e.FSType)
	}
	if e.Source != "" {
		fmt.Fprintf(&b, " %q", e.Source)
	}
	if e.Target != "" {
		if e.Source != "" {
			b.WriteString(" ->")
		}
		fmt.Fprintf(&b, " %q", e.Target)
	}
	if e.Flags != 0 {
		fmt.Fprintf(&b, " (%s)", FlagNames(e.Op, e.Flags))
	}
	if e.Data != "" {
		fmt.Fprintf(&b, " [%s]", e.Data)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if len(e.Messages) > 0 {
		fmt.Fprintf(&b, " (kernel: %s)", strings.Join(e.Messages, "; "))
	}
	return b.String()
}

// Unwrap returns the underlying error, usually a unix.Errno.
func (e *Error) Unwrap() error { return e.Err }

type flagName struct {
	v    uint64
	name string
}

var (
	msFlags = []flagName{
		{unix.MS_RDONLY, "MS_RDONLY"}, {unix.MS_NOSUID, "MS_NOSUID"}, {unix.MS_NODEV, "MS_NODEV"},
		{unix.MS_NOEXEC, "MS_NOEXEC"}, {unix.MS_REMOUNT, "MS_REMOUNT"}, {unix.MS_NOATIME, "MS_NOATIME"},
		{unix.MS_BIND, "MS_BIND"}, {unix.MS_MOVE, "MS_MOVE"}, {unix.MS_REC, "MS_REC"},
		{unix.MS_PRIVATE, "MS_PRIVATE"}, {unix.MS_SLAVE, "MS_SLAVE"}, {unix.MS_SHARED, "MS_SHARED"},
		{unix.MS_UNBINDABLE, "MS_UNBINDABLE"}, {unix.MS_RELATIME, "MS_RELATIME"},
	}
	umountFlags = []flagName{
		{unix.MNT_FORCE, "MNT_FORCE"}, {unix.MNT_DETACH, "MNT_DETACH"}, {unix.MNT_EXPIRE, "MNT_EXPIRE"},
		{unix.UMOUNT_NOFOLLOW, "UMOUNT_NOFOLLOW"},
	}
	moveFlags = []flagName{
		{unix.MOVE_MOUNT_F_SYMLINKS, "F_SYMLINKS"}, {unix.MOVE_MOUNT_F_AUTOMOUNTS, "F_AUTOMOUNTS"},
		{unix.MOVE_MOUNT_F_EMPTY_PATH, "F_EMPTY_PATH"}, {unix.MOVE_MOUNT_T_SYMLINKS, "T_SYMLINKS"},
		{unix.MOVE_MOUNT_T_AUTOMOUNTS, "T_AUTOMOUNTS"}, {unix.MOVE_MOUNT_T_EMPTY_PATH, "T_EMPTY_PATH"},
		{unix.MOVE_MOUNT_SET_GROUP, "SET_GROUP"}, {MoveMountBeneath, "BENEATH"},
	}
	treeFlags = []flagName{
		{unix.OPEN_TREE_CLONE, "OPEN_TREE_CLONE"}, {unix.OPEN_TREE_CLOEXEC, "OPEN_TREE_CLOEXEC"},
		{unix.AT_EMPTY_PATH, "AT_EMPTY_PATH"}, {unix.AT_RECURSIVE, "AT_RECURSIVE"},
		{unix.AT_SYMLINK_NOFOLLOW, "AT_SYMLINK_NOFOLLOW"},
	}
	attrFlags = []flagName{
		{unix.MOUNT_ATTR_RDONLY, "RDONLY"}, {unix.MOUNT_ATTR_NOSUID, "NOSUID"}, {unix.MOUNT_ATTR_NODEV, "NODEV"},
		{unix.MOUNT_ATTR_NOEXEC, "NOEXEC"}, {unix.MOUNT_ATTR_NOATIME, "NOATIME"},
		{unix.MOUNT_ATTR_STRICTATIME, "STRICTATIME"}, {unix.MOUNT_ATTR_NODIRATIME, "NODIRATIME"},
		{unix.MOUNT_ATTR_IDMAP, "IDMAP"}, {unix.MOUNT_ATTR_NOSYMFOLLOW, "NOSYMFOLLOW"},
	}
	fsopenFlags = []flagName{{unix.FSOPEN_CLOEXEC, "FSOPEN_CLOEXEC"}}
)

// FlagNames renders flags of the system call op by name ("MS_BIND|MS_REC"),
// leaving unknown bits in hex, so error messages need no decoding.
func FlagNames(op string, flags uint64) string {
	var table []flagName
	switch op {
	case "mount":
		table = msFlags
	case "umount2":
		table = umountFlags
	case "move_mount", "attach":
		table = moveFlags
	case "open_tree", "mount_setattr":
		table = treeFlags
	case "fsmount":
		table = attrFlags
	case "fsopen":
		table = fsopenFlags
	}
	var names []string
	rest := flags
	for _, f := range table {
		if f.v != 0 && rest&f.v == f.v {
			names = append(names, f.name)
			rest &^= f.v
		}
	}
	if rest != 0 || len(names) == 0 {
		names = append(names, fmt.Sprintf("%#x", rest))
	}
	return strings.Join(names, "|")
}

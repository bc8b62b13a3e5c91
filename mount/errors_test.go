package mount

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFlagNames(t *testing.T) {
	for _, tc := range []struct {
		op    string
		flags uint64
		want  string
	}{
		{"mount", unix.MS_BIND | unix.MS_REC, "MS_BIND|MS_REC"},
		{"mount", unix.MS_PRIVATE | 1<<40, "MS_PRIVATE|0x10000000000"},
		{"move_mount", unix.MOVE_MOUNT_F_EMPTY_PATH | unix.MOVE_MOUNT_T_EMPTY_PATH | MoveMountBeneath, "F_EMPTY_PATH|T_EMPTY_PATH|BENEATH"},
		{"umount2", unix.MNT_DETACH, "MNT_DETACH"},
		{"fsmount", unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOEXEC, "RDONLY|NOEXEC"},
		{"unknown-op", 5, "0x5"},
	} {
		if got := FlagNames(tc.op, tc.flags); got != tc.want {
			t.Errorf("FlagNames(%s, %#x) = %q, want %q", tc.op, tc.flags, got, tc.want)
		}
	}
}

func TestErrorFormatAndUnwrap(t *testing.T) {
	err := error(&Error{Op: "mount", Source: "/dev/loop3", Target: "/sysroot/usr", FSType: "erofs",
		Flags: unix.MS_RDONLY, Data: "x=y", Err: unix.EBUSY, Messages: []string{"e erofs: nope"}})
	s := err.Error()
	for _, want := range []string{"mount", "erofs", `"/dev/loop3"`, `"/sysroot/usr"`, "MS_RDONLY", "x=y", "busy", "e erofs: nope"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if !errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENOENT) {
		t.Errorf("errors.Is wrong for %v", err)
	}
}

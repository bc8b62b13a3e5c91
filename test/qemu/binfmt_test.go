package qemu

import (
	"strings"
	"testing"
)

func TestArm64Handler(t *testing.T) {
	const ours = "enabled\ninterpreter /var/cache/ext-setup-root/qemu-user/usr/bin/qemu-aarch64\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
	for _, c := range []struct {
		name, file string
		want       bool
	}{
		{"registered", ours, true},
		{"disabled", strings.Replace(ours, "enabled", "disabled", 1), false},
		{"no fix-binary flag", strings.Replace(ours, "flags: PF", "flags: P", 1), false},
		{"x86-64 magic", strings.Replace(ours, "0200b700", "02003e00", 1), false},
		{"empty", "", false},
	} {
		if got := arm64Handler(strings.NewReader(c.file)); got != c.want {
			t.Errorf("%s: arm64Handler = %v, want %v", c.name, got, c.want)
		}
	}
}

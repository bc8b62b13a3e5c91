package rootfs

import (
	"bytes"
	"testing"
)

// FuzzSplitNul: the xattr name list parser returns exactly the non-empty
// NUL-separated names of its input, none holding a NUL.
func FuzzSplitNul(f *testing.F) {
	f.Add([]byte("user.a\x00security.selinux\x00"))
	f.Add([]byte("\x00\x00x"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		var want [][]byte
		for _, s := range bytes.Split(b, []byte{0}) {
			if len(s) > 0 {
				want = append(want, s)
			}
		}
		got := splitNul(b)
		if len(got) != len(want) {
			t.Fatalf("%q: %d names, want %d", b, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) || bytes.IndexByte(got[i], 0) >= 0 {
				t.Fatalf("%q: name %d = %q, want %q", b, i, got[i], want[i])
			}
		}
	})
}

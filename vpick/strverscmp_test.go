package vpick

import (
	"strings"
	"testing"
)

// checkNewer asserts older < newer in both directions and self-equality.
func checkNewer(t *testing.T, older, newer string) {
	t.Helper()
	if r := StrverscmpImproved(older, newer); r >= 0 {
		t.Errorf("cmp(%q, %q) = %d, want < 0", older, newer, r)
	}
	if r := StrverscmpImproved(newer, older); r <= 0 {
		t.Errorf("cmp(%q, %q) = %d, want > 0", newer, older, r)
	}
	if r := StrverscmpImproved(newer, newer); r != 0 {
		t.Errorf("cmp(%q, %q) = %d, want 0", newer, newer, r)
	}
}

// TestStrverscmpImprovedOrder uses the ordered list from systemd's own
// test-string-util.c: every element is newer than all before it.
func TestStrverscmpImprovedOrder(t *testing.T) {
	versions := []string{
		"~1", "", "ab", "abb", "abc", "0001", "002", "12", "122", "122.9",
		"123~rc1", "123", "123-a", "123-a.1", "123-a1", "123-a1.1", "123-3", "123-3.1",
		"123^patch1", "123^1", "123.a-1", "123.1-1", "123a-1", "124",
	}
	for i := range versions {
		for j := i + 1; j < len(versions); j++ {
			checkNewer(t, versions[i], versions[j])
		}
	}
	// The sort order documented in strverscmp_improved()'s comment.
	doc := []string{"122.1", "123~rc1-1", "123", "123-a", "123-a.1", "123-1", "123-1.1", "123^post1", "123.a-1", "123.1-1", "123a-1", "124-1"}
	for i := 1; i < len(doc); i++ {
		checkNewer(t, doc[i-1], doc[i])
	}
}

func TestStrverscmpImprovedPairs(t *testing.T) {
	for _, p := range [][2]string{
		{"123.45-67.88", "123.45-67.89"},
		{"123.45-67.89", "123.45-67.89a"},
		{"123.45-67.ab", "123.45-67.89"},
		{"123.45-67.9", "123.45-67.89"},
		{"123.45-67", "123.45-67.89"},
		{"123.45-66.89", "123.45-67.89"},
		{"123.45-9.99", "123.45-67.89"},
		{"123.42-99.99", "123.45-67.89"},
		{"123-99.99", "123.45-67.89"},
		{"123~rc1-99.99", "123.45-67.89"},
		{"123~rc1-99.99", "123-45.67.89"},
		{"123~rc1-99.99", "123~rc2-67.89"},
		{"123~rc1-99.99", "123^aa2-67.89"},
		{"123~rc1-99.99", "123aa2-67.89"},
		{"123", "123."},
		{"12_3", "123"},
		{"12", "12_3"},
		{"12.3", "12_3"},
		{"123", "123.0"},
		{"123", "123_0"},
		{"123..0", "123.0"},
		{"~", ""},
		// rpm vercmp cases kept by systemd
		{"1.0", "2.0"}, {"2.0", "2.0.1"}, {"2.0.1", "2.0.1a"}, {"5.5p1", "5.5p2"}, {"5.5p1", "5.5p10"},
		{"10.1xyz", "10xyz"}, {"xyz10", "xyz10.1"}, {"xyz.4", "8"}, {"xyz.4", "2"}, {"5.5p2", "5.6p1"},
		{"5.6p1", "6.5p1"}, {"6.0", "6.0.rc1"}, {"10a2", "10b2"}, {"1.0a", "1.0aa"}, {"10.0001", "10.0039"},
		{"4.999.9", "5.0"}, {"20101121", "20101122"}, {"2.0", "2_0"}, {"1.0~rc1", "1.0"}, {"1.0~rc1", "1.0~rc2"},
		{"1.0~rc1~git123", "1.0~rc1"}, {"1.0", "1.0^"}, {"1.0", "1.0^git1"}, {"1.0^git1", "1.0^git2"},
		{"1.0^git1", "1.01"}, {"1.0^20160101", "1.0.1"}, {"1.0^20160101^git1", "1.0^20160102"},
		{"1.0~rc1", "1.0~rc1^git1"}, {"1.0^git1~pre", "1.0^git1"}, {"1.fc17", "1b.fc17"}, {"1.fc17", "1g.fc17"},
	} {
		checkNewer(t, p[0], p[1])
	}
	for _, p := range [][2]string{
		{"", ""}, {"0_", "0"}, {"_0_", "0"}, {"_0", "0"}, {"0", "0___"}, {"", "_"}, {"_", "_"}, {"~", "~"},
		{"10.0001", "10.1"}, {"a+", "a_"}, {"+a", "_a"}, {"_+", "+_"}, {"+", "_"}, {"1.1.α", "1.1.β"},
		{"1.1.αα", "1.1.α"},
	} {
		if r := StrverscmpImproved(p[0], p[1]); r != 0 {
			t.Errorf("cmp(%q, %q) = %d, want 0", p[0], p[1], r)
		}
	}
}

func FuzzStrverscmpImprovedAntisymmetric(f *testing.F) {
	for _, s := range []string{"1.0", "1~rc", "1^a-2", "..", "~~", "a.b-c^d"} {
		f.Add(s, strings.ToUpper(s))
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if x, y := StrverscmpImproved(a, b), StrverscmpImproved(b, a); x != -y {
			t.Fatalf("cmp(%q,%q)=%d but cmp(%q,%q)=%d", a, b, x, b, a, y)
		}
	})
}

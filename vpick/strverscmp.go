// Package vpick orders version strings and picks the newest entry of a
// versioned ".v/" directory the way systemd 262 does (strverscmp_improved()
// and path_pick(), see systemd.v(7)), so that we choose the same image and
// merge the layers in the same order as systemd-sysext/systemd-confext.
package vpick

import "cmp"

// isVersionChar reports the characters that carry meaning in a version;
// everything else only separates segments ("123_a" equals "123a").
func isVersionChar(c byte) bool {
	return isDigit(c) || isAlpha(c) || c == '~' || c == '-' || c == '^' || c == '.'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// at returns s[i], or 0 past the end (the C string terminator).
func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// StrverscmpImproved compares two version strings like systemd's
// strverscmp_improved(): negative if a is older than b, 0 if equivalent,
// positive if newer. The strings are split into numeric and alphabetic
// segments, each optionally prefixed by:
//
//   - '~' pre-release: older than anything, even the end of the string
//     ("1~rc1" < "1");
//   - '-' version/release separator: older than '^', '.' and no prefix
//     ("123-1" < "123.1");
//   - '^' patched release: newer than '-' but older than '.' or no prefix;
//   - '.' point release.
//
// After the '~' check a longer string is newer ("1" < "1.0"); numeric
// segments are newer than alphabetic ones and compare by value (leading
// zeros ignored), alphabetic ones compare bytewise with longer newer.
// Other characters only separate segments.
func StrverscmpImproved(a, b string) int {
	i, j := 0, 0
	for {
		for i < len(a) && !isVersionChar(a[i]) {
			i++
		}
		for j < len(b) && !isVersionChar(b[j]) {
			j++
		}

		if at(a, i) == '~' || at(b, j) == '~' {
			if r := cmpBool(at(a, i) != '~', at(b, j) != '~'); r != 0 {
				return r
			}
			i++
			j++
		}

		if i >= len(a) || j >= len(b) {
			return cmp.Compare(int(at(a, i)), int(at(b, j)))
		}

		for _, sep := range []byte{'-', '^', '.'} {
			if at(a, i) == sep || at(b, j) == sep {
				if r := cmpBool(at(a, i) != sep, at(b, j) != sep); r != 0 {
					return r
				}
				i++
				j++
			}
		}

		var ii, jj int
		if isDigit(at(a, i)) || isDigit(at(b, j)) {
			for ii = i; isDigit(at(a, ii)); ii++ {
			}
			for jj = j; isDigit(at(b, jj)); jj++ {
			}
			// A number is newer than an empty (alphabetic) segment.
			if r := cmpBool(i != ii, j != jj); r != 0 {
				return r
			}
			for at(a, i) == '0' {
				i++
			}
			for at(b, j) == '0' {
				j++
			}
			// Longer numbers are larger; equal lengths compare as text.
			if r := cmp.Compare(ii-i, jj-j); r != 0 {
				return r
			}
			if r := cmp.Compare(a[i:ii], b[j:jj]); r != 0 {
				return r
			}
		} else {
			for ii = i; isAlpha(at(a, ii)); ii++ {
			}
			for jj = j; isAlpha(at(b, jj)); jj++ {
			}
			n := min(ii-i, jj-j)
			if r := cmp.Compare(a[i:i+n], b[j:j+n]); r != 0 {
				return r
			}
			if r := cmp.Compare(ii-i, jj-j); r != 0 {
				return r
			}
		}
		i, j = ii, jj
	}
}

package extension

import "strings"

// verscmp orders image names like systemd's strverscmp_improved: runs of
// digits compare numerically (leading zeros ignored), other runs
// byte-wise, '~' sorts before everything (pre-releases) and a longer
// string wins when one is a prefix of the other.
func verscmp(a, b string) int {
	for {
		if a == "" || b == "" {
			switch {
			case a == b:
				return 0
			case a == "":
				if strings.HasPrefix(b, "~") {
					return 1
				}
				return -1
			default:
				if strings.HasPrefix(a, "~") {
					return -1
				}
				return 1
			}
		}
		if a[0] == '~' || b[0] == '~' {
			if a[0] != '~' {
				return 1
			}
			if b[0] != '~' {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		da, db := isDigit(a[0]), isDigit(b[0])
		if da && db {
			ra, rb := digitRun(a), digitRun(b)
			na, nb := strings.TrimLeft(a[:ra], "0"), strings.TrimLeft(b[:rb], "0")
			if len(na) != len(nb) {
				if len(na) < len(nb) {
					return -1
				}
				return 1
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[ra:], b[rb:]
			continue
		}
		if a[0] != b[0] {
			if da {
				return 1
			}
			if db {
				return -1
			}
			if a[0] < b[0] {
				return -1
			}
			return 1
		}
		a, b = a[1:], b[1:]
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

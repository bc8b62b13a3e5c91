package prepare

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CompileERE compiles a POSIX extended regular expression with the syntax
// and matching that GNU find -regextype egrep -regex applies (what Flatcar's
// reset uses) into a Go regexp that matches a whole path.
//
// Go's regexp (RE2) differs from GNU's matcher in syntax, not in the set of
// strings a whole-string match accepts (leftmost-first and leftmost-longest
// agree on whether the entire string can match), so the expression is
// translated:
//
//   - "." and bracket lists such as [^x] match a newline (GNU does for
//     find), and ^ and $ also match after and before a newline inside the
//     path (GNU's re_compile_pattern sets newline_anchor);
//   - a newline outside a bracket expression separates alternatives, as |;
//   - inside brackets a backslash is an ordinary character, "]" first is
//     literal, [:class:] works, [=c=] and [.c.] of one character are that
//     character;
//   - \w \W \s \S are GNU's classes, \b \B word boundaries, \` and \' the
//     start and end of the path, any other escaped character is literal;
//   - "{" that does not start a valid interval is literal, a repetition
//     operator with nothing to repeat (at the start, after "(" or "|") is
//     ignored, consecutive operators apply in turn (a** = a*), an unmatched
//     ")" is literal;
//   - not supported, an error (the reset is then not done): back-references
//     \1-\9, \< and \> word-edge anchors, multi-character collating
//     elements, intervals above 1000 (RE2's limit; GNU allows 32767);
//   - "." and bracket lists match one UTF-8 character where GNU in the C
//     locale (the initrd's) matches one byte: different only for names
//     with non-ASCII characters matched by "." or a list.
func CompileERE(expr string) (*regexp.Regexp, error) {
	t, err := translateERE(expr)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(`(?s)(?m)\A(?:` + t + `)\z`)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", expr, err)
	}
	return re, nil
}

// ereState is the translation of one group level: the atoms of the
// current branch (each a complete RE2 fragment, so an operator can wrap
// the last one) and the finished branches.
type ereLevel struct {
	branches []string
	atoms    []string
	repeated bool // the last atom already carries an operator
}

func (l *ereLevel) add(atom string) { l.atoms = append(l.atoms, atom); l.repeated = false }

// op applies a repetition operator to the last atom; with none it is
// ignored, as GNU does.
func (l *ereLevel) op(o string) {
	n := len(l.atoms)
	if n == 0 || l.atoms[n-1] == "^" || l.atoms[n-1] == "$" || strings.HasPrefix(l.atoms[n-1], `\A`) || l.atoms[n-1] == `\z` {
		return
	}
	a := l.atoms[n-1]
	if l.repeated {
		a = "(?:" + a + ")"
	}
	l.atoms[n-1] = a + o
	l.repeated = true
}

func (l *ereLevel) endBranch() {
	l.branches = append(l.branches, strings.Join(l.atoms, ""))
	l.atoms, l.repeated = nil, false
}

func (l *ereLevel) String() string {
	l.endBranch()
	return strings.Join(l.branches, "|")
}

func translateERE(s string) (string, error) {
	stack := []*ereLevel{{}}
	cur := stack[0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\n', '|':
			cur.endBranch()
		case '(':
			cur = &ereLevel{}
			stack = append(stack, cur)
		case ')':
			if len(stack) == 1 {
				cur.add(`\)`)
				continue
			}
			inner := cur.String()
			stack = stack[:len(stack)-1]
			cur = stack[len(stack)-1]
			cur.add("(" + inner + ")")
		case '*', '+', '?':
			cur.op(string(c))
		case '{':
			if iv, n, ok := parseInterval(s[i:]); ok {
				if iv == "" {
					return "", fmt.Errorf("regex %q: interval above 1000 not supported", s)
				}
				cur.op(iv)
				i += n - 1
			} else {
				cur.add(`\{`)
			}
		case '^':
			cur.add("^")
		case '$':
			cur.add("$")
		case '.':
			cur.add(".")
		case '[':
			cls, n, err := translateBracket(s[i:])
			if err != nil {
				return "", fmt.Errorf("regex %q: %w", s, err)
			}
			cur.add(cls)
			i += n - 1
		case '\\':
			if i+1 >= len(s) {
				return "", fmt.Errorf("regex %q: trailing backslash", s)
			}
			i++
			e := s[i]
			switch {
			case e >= '1' && e <= '9':
				return "", fmt.Errorf("regex %q: back-reference \\%c not supported", s, e)
			case e == '<' || e == '>':
				return "", fmt.Errorf("regex %q: \\%c not supported", s, e)
			case e == 'w':
				cur.add(`[_[:alnum:]]`)
			case e == 'W':
				cur.add(`[^_[:alnum:]]`)
			case e == 's':
				cur.add(`[[:space:]]`)
			case e == 'S':
				cur.add(`[^[:space:]]`)
			case e == 'b':
				cur.add(`\b`)
			case e == 'B':
				cur.add(`\B`)
			case e == '`':
				cur.add(`\A`)
			case e == '\'':
				cur.add(`\z`)
			default:
				cur.add(regexp.QuoteMeta(string(e)))
			}
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			cur.add(regexp.QuoteMeta(string(r)))
			i += n - 1
		}
	}
	if len(stack) != 1 {
		return "", fmt.Errorf("regex %q: unmatched (", s)
	}
	return cur.String(), nil
}

// parseInterval reads "{n}", "{n,}", "{,m}" or "{n,m}" at the start of s
// and returns it in RE2 form ("" when a bound is above 1000) and its
// length; ok is false when s does not start with a valid interval.
func parseInterval(s string) (string, int, bool) {
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", 0, false
	}
	body := s[1:end]
	lo, hi, comma := body, "", false
	if k := strings.IndexByte(body, ','); k >= 0 {
		lo, hi, comma = body[:k], body[k+1:], true
	}
	num := func(x string) (int, bool) {
		if x == "" {
			return -1, true
		}
		for _, r := range x {
			if r < '0' || r > '9' {
				return 0, false
			}
		}
		n, err := strconv.Atoi(x)
		return n, err == nil
	}
	l, ok1 := num(lo)
	h, ok2 := num(hi)
	if !ok1 || !ok2 || (l < 0 && h < 0) || (!comma && l < 0) {
		return "", 0, false
	}
	if l < 0 {
		l = 0
	}
	if h >= 0 && h < l {
		return "", 0, false
	}
	if l > 1000 || h > 1000 {
		return "", end + 1, true
	}
	switch {
	case !comma:
		return fmt.Sprintf("{%d}", l), end + 1, true
	case h < 0:
		return fmt.Sprintf("{%d,}", l), end + 1, true
	default:
		return fmt.Sprintf("{%d,%d}", l, h), end + 1, true
	}
}

// translateBracket translates the POSIX bracket expression at the start of
// s into an RE2 class and returns its length.
func translateBracket(s string) (string, int, error) {
	i := 1
	var b strings.Builder
	b.WriteByte('[')
	if i < len(s) && s[i] == '^' {
		b.WriteByte('^')
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return "", 0, fmt.Errorf("unmatched [")
		}
		c := s[i]
		if c == ']' && !first {
			b.WriteByte(']')
			return b.String(), i + 1, nil
		}
		first = false
		if c == '[' && i+1 < len(s) && (s[i+1] == ':' || s[i+1] == '=' || s[i+1] == '.') {
			kind := s[i+1]
			end := strings.Index(s[i+2:], string(kind)+"]")
			if end < 0 {
				return "", 0, fmt.Errorf("unterminated [%c", kind)
			}
			name := s[i+2 : i+2+end]
			i += 2 + end + 2
			switch kind {
			case ':':
				b.WriteString("[:" + name + ":]")
			default:
				if len(name) != 1 {
					return "", 0, fmt.Errorf("collating element [%c%s%c] not supported", kind, name, kind)
				}
				b.WriteString(quoteClassChar(rune(name[0])))
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteString(quoteClassChar(r))
		i += n
		// A range: c-d (a "-" before "]" is literal).
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			d, m := utf8.DecodeRuneInString(s[i+1:])
			if d == '[' && i+2 < len(s) && (s[i+2] == '.' || s[i+2] == '=') {
				return "", 0, fmt.Errorf("collating element as a range end not supported")
			}
			if d < r {
				return "", 0, fmt.Errorf("invalid range end %c-%c", r, d)
			}
			b.WriteByte('-')
			b.WriteString(quoteClassChar(d))
			i += 1 + m
		}
	}
}

// quoteClassChar writes c so that RE2 reads it literally in a class.
func quoteClassChar(c rune) string {
	switch c {
	case '\\', ']', '[', '^', '-':
		return `\` + string(c)
	}
	if c < 0x20 || c == 0x7f || c == utf8.RuneError {
		return fmt.Sprintf(`\x{%x}`, c)
	}
	return string(c)
}

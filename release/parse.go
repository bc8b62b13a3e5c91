// Package release reads os-release(5) and extension-release files and
// decides, exactly as systemd 262's extension_release_validate() does,
// whether an extension image fits the host it is about to be merged into.
//
// The parser accepts precisely what systemd's env-file parser accepts, so
// that an image we merge is an image systemd-sysext/systemd-confext would
// merge too (and the other way round): a stricter parser would make the
// booted system's refresh see a different image set and re-merge.
package release

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxFileSize bounds how much of a release file is read. Real files are a
// few hundred bytes; the bound keeps a hostile image from exhausting memory.
const MaxFileSize = 4 << 20

// SyntaxError is a release file that systemd refuses to load (today only
// invalid UTF-8 in a key or value). It names the file and the line.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

// Error is "FILE:LINE: message", naming where the syntax broke.
func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Issue is a line systemd silently ignores (no '=', an unterminated quote
// that runs to the end of the file). Callers log these so that a user can
// see why a field seems to be missing, without changing the outcome.
type Issue struct {
	File string
	Line int
	Msg  string
}

// String is "FILE:LINE: message", for the warning a caller logs.
func (i Issue) String() string { return fmt.Sprintf("%s:%d: %s", i.File, i.Line, i.Msg) }

// Parse reads KEY=VALUE assignments in os-release syntax from r; name is
// used in errors. A later assignment of the same key wins, as in systemd.
// The only error besides I/O is *SyntaxError.
func Parse(r io.Reader, name string) (map[string]string, error) {
	m, _, err := ParseDetailed(r, name)
	return m, err
}

// shellNeedEscape are the characters whose backslash is dropped inside
// double quotes (systemd's SHELL_NEED_ESCAPE); any other escaped character
// keeps its backslash, like a real shell.
const shellNeedEscape = "\"\\`$"

type parseState int

const (
	stPreKey parseState = iota
	stKey
	stPreValue
	stValue
	stValueEscape
	stSingle
	stDouble
	stDoubleEscape
	stComment
	stCommentEscape
)

func isNewline(c byte) bool { return c == '\n' || c == '\r' }
func isSpace(c byte) bool   { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// ParseDetailed is Parse that also returns the lines systemd ignores.
//
// The state machine follows systemd's parse_env_file_internal(): leading
// whitespace is skipped, '#' or ';' at the start of a key starts a comment,
// a line without '=' is dropped, the key loses trailing whitespace, an
// unquoted value loses leading and trailing whitespace but keeps inner
// whitespace, single quotes are literal, double quotes unescape only
// \" \\ \` \$ (other escapes keep the backslash), a backslash-newline
// continues the value, and adjacent quoted and unquoted parts concatenate.
// Like systemd, parsing stops at a NUL byte.
func ParseDetailed(r io.Reader, name string) (map[string]string, []Issue, error) {
	data, err := io.ReadAll(io.LimitReader(bufio.NewReader(r), MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, nil, &SyntaxError{File: name, Line: 1, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}

	m := map[string]string{}
	var issues []Issue
	var key, value []byte
	hasValue := false
	keyWS, valueWS := -1, -1 // index where trailing whitespace starts, -1 if none
	line, startLine := 1, 1
	state := stPreKey

	push := func() error {
		k := key
		if keyWS >= 0 {
			k = k[:keyWS]
		}
		if !utf8.Valid(k) {
			return &SyntaxError{File: name, Line: startLine, Msg: fmt.Sprintf("invalid UTF-8 in key %q", k)}
		}
		v := ""
		if hasValue {
			if !utf8.Valid(value) {
				return &SyntaxError{File: name, Line: startLine, Msg: fmt.Sprintf("invalid UTF-8 in value of %s", k)}
			}
			v = string(value)
		}
		m[string(k)] = v
		key, value, hasValue = key[:0], nil, false
		return nil
	}
	appendValue := func(c ...byte) {
		value = append(value, c...)
		hasValue = true
	}

	for _, c := range data {
		switch state {
		case stPreKey:
			switch {
			case c == '#' || c == ';':
				state = stComment
			case !isSpace(c):
				state = stKey
				startLine = line
				keyWS = -1
				key = append(key[:0], c)
			}
		case stKey:
			switch {
			case isNewline(c):
				issues = append(issues, Issue{name, startLine, fmt.Sprintf("line %q has no '=', ignored", key)})
				state = stPreKey
				key = key[:0]
			case c == '=':
				state = stPreValue
				valueWS = -1
			default:
				if !isSpace(c) {
					keyWS = -1
				} else if keyWS < 0 {
					keyWS = len(key)
				}
				key = append(key, c)
			}
		case stPreValue:
			switch {
			case isNewline(c):
				state = stPreKey
				if err := push(); err != nil {
					return nil, nil, err
				}
			case c == '\'':
				state = stSingle
				hasValue = true
			case c == '"':
				state = stDouble
				hasValue = true
			case c == '\\':
				state = stValueEscape
			case !isSpace(c):
				state = stValue
				appendValue(c)
			}
		case stValue:
			switch {
			case isNewline(c):
				state = stPreKey
				if valueWS >= 0 {
					value = value[:valueWS]
				}
				if err := push(); err != nil {
					return nil, nil, err
				}
			case c == '\\':
				state = stValueEscape
				valueWS = -1
			default:
				if !isSpace(c) {
					valueWS = -1
				} else if valueWS < 0 {
					valueWS = len(value)
				}
				appendValue(c)
			}
		case stValueEscape:
			state = stValue
			if !isNewline(c) {
				appendValue(c)
			}
		case stSingle:
			if c == '\'' {
				state = stPreValue
			} else {
				appendValue(c)
			}
		case stDouble:
			switch c {
			case '"':
				state = stPreValue
			case '\\':
				state = stDoubleEscape
			default:
				appendValue(c)
			}
		case stDoubleEscape:
			state = stDouble
			if strings.IndexByte(shellNeedEscape, c) >= 0 {
				appendValue(c)
			} else if c != '\n' {
				appendValue('\\', c)
			}
		case stComment:
			if c == '\\' {
				state = stCommentEscape
			} else if isNewline(c) {
				state = stPreKey
			}
		case stCommentEscape:
			// Since systemd v254 a backslash does not continue a comment
			// onto the next line.
			if isNewline(c) {
				state = stPreKey
			} else {
				state = stComment
			}
		}
		if isNewline(c) {
			line++
		}
	}

	switch state {
	case stSingle, stDouble, stDoubleEscape:
		issues = append(issues, Issue{name, startLine, fmt.Sprintf("unterminated quote in value of %s, value runs to end of file", key)})
		fallthrough
	case stPreValue, stValue, stValueEscape:
		if state == stValue && valueWS >= 0 {
			value = value[:valueWS]
		}
		if err := push(); err != nil {
			return nil, nil, err
		}
	case stKey:
		issues = append(issues, Issue{name, startLine, fmt.Sprintf("line %q has no '=', ignored", key)})
	}
	return m, issues, nil
}

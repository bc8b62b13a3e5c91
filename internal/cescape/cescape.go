// Package cescape converts strings to and from the C-style escaping
// systemd's cescape() writes: in the work_dir file a merge records, and in
// the content of the TPM measurement log's records. Both are read back from
// disk, so Unescape is strict: an escape systemd never writes is an error,
// not a guess.
package cescape

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Escape escapes s as systemd's cescape() does: the named control
// characters, backslash and quotes get their C escape, any other byte
// below space or from 127 up becomes \xNN.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if e, ok := named[c]; ok {
			b.WriteByte('\\')
			b.WriteByte(e)
			continue
		}
		if c < ' ' || c >= 127 {
			fmt.Fprintf(&b, `\x%02x`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// named maps a byte to the letter of its C escape.
var named = map[byte]byte{
	'\a': 'a', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v',
	'\\': '\\', '"': '"', '\'': '\'',
}

// unnamed is named's inverse.
var unnamed = func() map[byte]byte {
	m := make(map[byte]byte, len(named))
	for k, v := range named {
		m[v] = k
	}
	return m
}()

// Unescape undoes systemd's cescape(): \\ \" \' \a \b \f \n \r \t \v, \xNN
// and three-digit octal \NNN. Anything else after a backslash, a short
// escape or a lone trailing backslash is an error.
func Unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(s) {
			return "", errors.New("ends in a lone backslash")
		}
		i++
		e := s[i]
		if v, ok := unnamed[e]; ok {
			b.WriteByte(v)
			continue
		}
		switch {
		case e == 'x':
			if i+2 >= len(s) {
				return "", errors.New(`short \x escape`)
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf(`bad \x escape %q`, s[i+1:i+3])
			}
			b.WriteByte(byte(n))
			i += 2
		case e >= '0' && e <= '7' && i+2 < len(s):
			n, err := strconv.ParseUint(s[i:i+3], 8, 8)
			if err != nil {
				return "", fmt.Errorf(`bad octal escape %q`, s[i:i+3])
			}
			b.WriteByte(byte(n))
			i += 2
		default:
			return "", fmt.Errorf(`unknown escape \%c`, e)
		}
	}
	return b.String(), nil
}

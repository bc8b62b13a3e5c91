package extension

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/ext-setup-root/ext-setup-root/vpick"
)

// A tiny ordered JSON writer reproducing sd-json's pretty format byte for
// byte; encoding/json cannot (it sorts map keys, uses ": " and escapes
// '<', '>', '&' and U+2028).

type sdjValue interface {
	format(b *bytes.Buffer, depth int)
}

type sdjMember struct {
	key string
	val sdjValue
}

type sdjObject []sdjMember

type sdjString string

type sdjUnsigned uint64

type sdjInteger int64

func sdjIndent(b *bytes.Buffer, depth int) {
	for range depth {
		b.WriteByte('\t')
	}
}

func (o sdjObject) format(b *bytes.Buffer, depth int) {
	if len(o) == 0 {
		b.WriteString("{}")
		return
	}
	b.WriteString("{\n")
	for i, m := range o {
		if i > 0 {
			b.WriteString(",\n")
		}
		sdjIndent(b, depth+1)
		sdjString(m.key).format(b, depth+1)
		b.WriteString(" : ")
		m.val.format(b, depth+1)
	}
	b.WriteByte('\n')
	sdjIndent(b, depth)
	b.WriteByte('}')
}

// format escapes like sd-json's json_format_string(): '"' and '\\', the
// short escapes \b \f \n \r \t, other bytes below 0x20 as \u00xx; every
// other byte (including UTF-8 sequences and 0x7f) is written verbatim.
func (s sdjString) format(b *bytes.Buffer, _ int) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(b, `\u%04x`, c)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

func (u sdjUnsigned) format(b *bytes.Buffer, _ int) { b.WriteString(strconv.FormatUint(uint64(u), 10)) }

func (n sdjInteger) format(b *bytes.Buffer, _ int) { b.WriteString(strconv.FormatInt(int64(n), 10)) }

func sortOriginStrings(s []string) { sort.Strings(s) }

func sortOriginExtensions(e []OriginExtension) {
	sort.SliceStable(e, func(i, j int) bool { return vpick.StrverscmpImproved(e[i].Name, e[j].Name) < 0 })
}

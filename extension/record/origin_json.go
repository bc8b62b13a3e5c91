package record

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/ext-setup-root/ext-setup-root/vpick"
)

// A tiny ordered JSON writer reproducing sd-json's output byte for byte,
// for the origin record and for status/list --json; encoding/json cannot
// (it sorts map keys, uses ":" with no spaces in indented output and
// escapes '<', '>', '&' and U+2028).

// JSONValue is one JSON value that writes itself into an sdjWriter.
type JSONValue interface {
	format(w *sdjWriter)
}

// sdjWriter collects the output: pretty is SD_JSON_FORMAT_PRETTY (TAB
// indentation, `"key" : value`), otherwise compact as `--json=short`.
type sdjWriter struct {
	bytes.Buffer
	pretty bool
	depth  int
}

// FormatJSON writes v as sd-json does, without a trailing newline.
func FormatJSON(v JSONValue, pretty bool) []byte {
	w := &sdjWriter{pretty: pretty}
	v.format(w)
	return w.Bytes()
}

type JSONMember struct {
	Key string
	Val JSONValue
}

type JSONObject []JSONMember

type JSONArray []JSONValue

type JSONNull struct{}

type JSONString string

type JSONUnsigned uint64

type JSONInteger int64

// newline starts a line at the current depth; compact output has none.
func (w *sdjWriter) newline() {
	if !w.pretty {
		return
	}
	w.WriteByte('\n')
	for range w.depth {
		w.WriteByte('\t')
	}
}

// container writes n items between open and close, separated by commas,
// one per line when pretty; an empty container is "{}" or "[]".
func (w *sdjWriter) container(open, close byte, n int, item func(i int)) {
	w.WriteByte(open)
	if n == 0 {
		w.WriteByte(close)
		return
	}
	w.depth++
	for i := range n {
		if i > 0 {
			w.WriteByte(',')
		}
		w.newline()
		item(i)
	}
	w.depth--
	w.newline()
	w.WriteByte(close)
}

func (o JSONObject) format(w *sdjWriter) {
	w.container('{', '}', len(o), func(i int) {
		JSONString(o[i].Key).format(w)
		if w.pretty {
			w.WriteString(" : ")
		} else {
			w.WriteByte(':')
		}
		o[i].Val.format(w)
	})
}

func (a JSONArray) format(w *sdjWriter) {
	w.container('[', ']', len(a), func(i int) { a[i].format(w) })
}

func (JSONNull) format(w *sdjWriter) { w.WriteString("null") }

// format escapes like sd-json's json_format_string(): '"' and '\\', the
// short escapes \b \f \n \r \t, other bytes below 0x20 as \u00xx; every
// other byte (including UTF-8 sequences and 0x7f) is written verbatim.
func (s JSONString) format(w *sdjWriter) {
	w.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			w.WriteString(`\"`)
		case '\\':
			w.WriteString(`\\`)
		case '\b':
			w.WriteString(`\b`)
		case '\f':
			w.WriteString(`\f`)
		case '\n':
			w.WriteString(`\n`)
		case '\r':
			w.WriteString(`\r`)
		case '\t':
			w.WriteString(`\t`)
		default:
			if c < 0x20 {
				fmt.Fprintf(w, `\u%04x`, c)
			} else {
				w.WriteByte(c)
			}
		}
	}
	w.WriteByte('"')
}

func (u JSONUnsigned) format(w *sdjWriter) { w.WriteString(strconv.FormatUint(uint64(u), 10)) }

func (n JSONInteger) format(w *sdjWriter) { w.WriteString(strconv.FormatInt(int64(n), 10)) }

func sortOriginStrings(s []string) { sort.Strings(s) }

func sortOriginExtensions(e []OriginExtension) {
	sort.SliceStable(e, func(i, j int) bool { return vpick.StrverscmpImproved(e[i].Name, e[j].Name) < 0 })
}

// WriteJSON writes v as sd-json does, compact ("short") or pretty,
// followed by a newline.
func WriteJSON(w io.Writer, v JSONValue, pretty bool) error {
	_, err := w.Write(append(FormatJSON(v, pretty), '\n'))
	return err
}

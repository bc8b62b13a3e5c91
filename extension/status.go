package extension

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// HierarchyStatus is one row of `status`.
type HierarchyStatus struct {
	Hierarchy  string   // configured hierarchy, "/etc"
	Merged     bool     // carries a merge of this class (ours or systemd's)
	Extensions []string // names from the plural file
	Since      int64    // usec: mtime of .systemd-<C> (0 if not merged)
}

// Status reports the merge state of each existing hierarchy.
//
// Known difference: systemd 262 shows as "since" the mtime of the
// hierarchy path WITHOUT the --root prefix (a bug, docs/systemd262-facts.md
// item 8); we show when the merge was made (mtime of .systemd-<C>).
func Status(ctx context.Context, opt Options) ([]HierarchyStatus, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var out []HierarchyStatus
	for _, h := range e.hiers {
		s, err := e.inspect(h)
		if err != nil {
			return nil, err
		}
		s.close()
		if s.top == nil && !s.ours {
			if _, err := openDirIn(e.root, h); err != nil {
				continue
			}
		}
		row := HierarchyStatus{Hierarchy: h, Merged: s.ours}
		if s.ours {
			row.Extensions, row.Since = s.names, s.metaTime
		}
		out = append(out, row)
	}
	return out, nil
}

// formatTimestamp is systemd's TABLE_TIMESTAMP format.
func formatTimestamp(usec int64) string {
	if usec <= 0 {
		return "-"
	}
	return time.UnixMicro(usec).Format("Mon 2006-01-02 15:04:05 MST")
}

// WriteStatus prints rows as systemd's table or JSON (json: "", "off",
// "short", "pretty").
func WriteStatus(w io.Writer, rows []HierarchyStatus, json string) error {
	if json == "short" || json == "pretty" {
		arr := make([]any, 0, len(rows))
		for _, r := range rows {
			exts := make([]any, 0, len(r.Extensions))
			for _, n := range r.Extensions {
				exts = append(exts, n)
			}
			var since any
			if r.Merged {
				since = r.Since
			}
			arr = append(arr, ordered{{"hierarchy", r.Hierarchy}, {"extensions", exts}, {"since", since}})
		}
		return writeJSON(w, arr, json == "pretty")
	}
	var t [][]string
	t = append(t, []string{"HIERARCHY", "EXTENSIONS", "SINCE"})
	for _, r := range rows {
		if !r.Merged {
			t = append(t, []string{r.Hierarchy, "-", "-"})
			continue
		}
		if len(r.Extensions) == 0 {
			t = append(t, []string{r.Hierarchy, "-", formatTimestamp(r.Since)})
			continue
		}
		for i, n := range r.Extensions {
			if i == 0 {
				t = append(t, []string{r.Hierarchy, n, formatTimestamp(r.Since)})
			} else {
				t = append(t, []string{"", n, ""})
			}
		}
	}
	_, err := io.WriteString(w, formatTable(t))
	return err
}

// formatTable lays out cells like systemd's format-table without colours:
// columns padded to their widest cell and separated by one space, the last
// column not padded.
func formatTable(rows [][]string) string {
	if len(rows) == 0 {
		return ""
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			if n := len([]rune(c)); n > width[i] {
				width[i] = n
			}
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+1))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ordered is a JSON object with member order kept.
type ordered []struct {
	k string
	v any
}

// writeJSON writes v as sd-json does: compact ("short") or pretty with TAB
// indentation and " : " separators, followed by a newline.
func writeJSON(w io.Writer, v any, pretty bool) error {
	var b strings.Builder
	encodeJSON(&b, v, pretty, 0)
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func encodeJSON(b *strings.Builder, v any, pretty bool, depth int) {
	nl := func(d int) {
		if pretty {
			b.WriteString("\n" + strings.Repeat("\t", d))
		}
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		b.WriteString(jsonString(x))
	case int64:
		fmt.Fprintf(b, "%d", x)
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[")
		for i, e := range x {
			if i > 0 {
				b.WriteString(",")
			}
			nl(depth + 1)
			encodeJSON(b, e, pretty, depth+1)
		}
		nl(depth)
		b.WriteString("]")
	case ordered:
		if len(x) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{")
		for i, m := range x {
			if i > 0 {
				b.WriteString(",")
			}
			nl(depth + 1)
			b.WriteString(jsonString(m.k))
			if pretty {
				b.WriteString(" : ")
			} else {
				b.WriteString(":")
			}
			encodeJSON(b, m.v, pretty, depth+1)
		}
		nl(depth)
		b.WriteString("}")
	default:
		fmt.Fprintf(b, "%v", x)
	}
}

// jsonString quotes s as JSON (sd-json escapes the same control
// characters; it does not escape '/', '<', '>' or '&').
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

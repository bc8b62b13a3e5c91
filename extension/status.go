package extension

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/ext-setup-root/ext-setup-root/extension/record"
)

// HierarchyStatus is one row of `status`.
type HierarchyStatus struct {
	Hierarchy  string   // configured hierarchy, "/etc"
	Merged     bool     // carries a merge of this class (ours or systemd's)
	Extensions []string // names from the plural file
	Since      int64    // usec: mtime of .systemd-<C> (0 if not merged)
	// Verity maps the names of images merged through dm-verity to their
	// root hash, from the merge's origin record (an addition to
	// systemd's output, shown only when there is one).
	Verity map[string]string
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
		missing := s.top == nil
		s.close()
		if missing {
			continue // systemd lists only hierarchies that exist
		}
		row := HierarchyStatus{Hierarchy: h, Merged: s.ours}
		if s.ours {
			row.Extensions, row.Since = s.names, s.metaTime
			row.Verity = originVerity(s.origin)
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
		arr := make(record.JSONArray, 0, len(rows))
		for _, r := range rows {
			exts := make(record.JSONArray, 0, len(r.Extensions))
			for _, n := range r.Extensions {
				exts = append(exts, record.JSONString(n))
			}
			var since record.JSONValue = record.JSONNull{}
			if r.Merged {
				since = record.JSONInteger(r.Since)
			}
			obj := record.JSONObject{{Key: "hierarchy", Val: record.JSONString(r.Hierarchy)}, {Key: "extensions", Val: exts}, {Key: "since", Val: since}}
			if len(r.Verity) > 0 {
				v := record.JSONObject{}
				for _, n := range r.Extensions {
					if h, ok := r.Verity[n]; ok {
						v = append(v, record.JSONMember{Key: n, Val: record.JSONString(h)})
					}
				}
				obj = append(obj, record.JSONMember{Key: "verityHashes", Val: v})
			}
			arr = append(arr, obj)
		}
		return record.WriteJSON(w, arr, json == "pretty")
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
			if h, ok := r.Verity[n]; ok && len(h) >= 16 {
				n += " (dm-verity " + h[:16] + "…)"
			}
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

// originVerity returns the verityHash of each image in an origin record
// (nil when none has one or the record does not parse).
func originVerity(origin []byte) map[string]string {
	if len(origin) == 0 {
		return nil
	}
	var doc struct {
		Extensions map[string]struct {
			VerityHash string `json:"verityHash"`
		} `json:"extensions"`
	}
	if err := json.Unmarshal(origin, &doc); err != nil {
		return nil
	}
	var out map[string]string
	for n, x := range doc.Extensions {
		if x.VerityHash != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[n] = x.VerityHash
		}
	}
	return out
}

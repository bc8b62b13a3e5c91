package extension

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// originDoc is systemd's refresh-skip record (the origin file), built from
// the mutable mode, the mutable dirs per hierarchy, the overlay options
// from the environment and one identity per accepted image. It is kept as
// plain data so that it can be written in systemd's exact pretty format and
// compared the way sd_json_variant_equal does.
type originDoc struct {
	Mode         string
	MutableDirs  map[string]string // hierarchy -> root-stripped dir
	MountOptions string
	Extensions   map[string]b1Identity
}

// marshalSystemd formats d as sd_json_variant_format(PRETTY|NEWLINE) does:
// TAB indentation, " : " between key and value, one member per line, and a
// final newline. Keys are written in a stable order (systemd's is hash
// order; readers compare as JSON).
func (d *originDoc) marshalSystemd() []byte {
	var b bytes.Buffer
	b.WriteString("{\n\t\"mutable\" : {\n\t\t\"mode\" : ")
	b.WriteString(jsonString(d.Mode))
	if len(d.MutableDirs) > 0 {
		b.WriteString(",\n\t\t\"mutableDirs\" : {\n")
		keys := sortedKeys(d.MutableDirs)
		for i, k := range keys {
			fmt.Fprintf(&b, "\t\t\t%s : %s", jsonString(k), jsonString(d.MutableDirs[k]))
			if i < len(keys)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("\t\t}")
	}
	b.WriteString("\n\t}")
	if d.MountOptions != "" {
		b.WriteString(",\n\t\"mountOptions\" : " + jsonString(d.MountOptions))
	}
	if len(d.Extensions) > 0 {
		b.WriteString(",\n\t\"extensions\" : {\n")
		names := make([]string, 0, len(d.Extensions))
		for n := range d.Extensions {
			names = append(names, n)
		}
		sort.Strings(names)
		for i, n := range names {
			id := d.Extensions[n]
			fmt.Fprintf(&b, "\t\t%s : {\n\t\t\t\"path\" : %s", jsonString(n), jsonString(id.Path))
			if id.VerityHash != "" {
				fmt.Fprintf(&b, ",\n\t\t\t\"verityHash\" : %s", jsonString(id.VerityHash))
			} else {
				fmt.Fprintf(&b, ",\n\t\t\t\"onMountId\" : %d", id.OnMountID)
				if id.Handle != "" {
					fmt.Fprintf(&b, ",\n\t\t\t\"fileHandle\" : {\n\t\t\t\t\"type\" : %d,\n\t\t\t\t\"handle\" : %s\n\t\t\t}", id.HandleType, jsonString(id.Handle))
				} else {
					fmt.Fprintf(&b, ",\n\t\t\t\"inode\" : %d", id.Inode)
				}
				fmt.Fprintf(&b, ",\n\t\t\t\"crtime\" : %d,\n\t\t\t\"mtime\" : %d", id.Crtime, id.Mtime)
			}
			b.WriteString("\n\t\t}")
			if i < len(names)-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString("\t}")
	}
	b.WriteString("\n}\n")
	return b.Bytes()
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
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

// parseJSONValue parses any JSON document keeping numbers exact.
func parseJSONValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// jsonEqual compares two parsed JSON values like sd_json_variant_equal:
// deep, member order ignored, numbers by value.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, okx := new(big.Float).SetString(string(x))
		fy, oky := new(big.Float).SetString(string(y))
		return okx && oky && fx.Cmp(fy) == 0
	default:
		return a == b
	}
}

// originEqual reports whether the origin bytes read from a merge describe
// the same state as d.
func originEqual(old []byte, d *originDoc) (bool, error) {
	ov, err := parseJSONValue(old)
	if err != nil {
		return false, err
	}
	nv, err := parseJSONValue(d.marshalSystemd())
	if err != nil {
		return false, err
	}
	return jsonEqual(ov, nv), nil
}

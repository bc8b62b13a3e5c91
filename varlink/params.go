package varlink

import (
	"bytes"
	"encoding/json"
)

// kind is the JSON type a parameter must have. Nullable kinds accept
// null as "unset".
type kind int

const (
	kindBool       kind = iota // true or false; null is invalid (sd-json's tristate dispatch)
	kindString                 // a string; null is invalid
	kindNullString             // a string or null
	kindNullArray              // an array or null
)

// decodeParams checks the "parameters" object of a call against want
// (name -> kind): an unknown member, a member given twice or a member of
// the wrong type is org.varlink.service.InvalidParameter naming it, as
// sd-varlink answers. It returns the members present, null ones left out.
func decodeParams(raw json.RawMessage, want map[string]kind) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	if raw == nil {
		return out, nil
	}
	fields, err := objectFields(raw)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, f := range fields {
		k, ok := want[f.name]
		if !ok || seen[f.name] || !k.accepts(f.raw) {
			return nil, errInvalidParameter(f.name)
		}
		seen[f.name] = true
		if !f.isNull() {
			out[f.name] = f.raw
		}
	}
	return out, nil
}

// accepts reports whether raw (one JSON value) has kind k.
func (k kind) accepts(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	null := bytes.Equal(raw, []byte("null"))
	switch k {
	case kindBool:
		return bytes.Equal(raw, []byte("true")) || bytes.Equal(raw, []byte("false"))
	case kindString:
		return raw[0] == '"'
	case kindNullString:
		return null || raw[0] == '"'
	case kindNullArray:
		return null || raw[0] == '['
	}
	return false
}

// boolParam returns the boolean member name of p, or def when absent.
func boolParam(p map[string]json.RawMessage, name string, def bool) bool {
	v, ok := p[name]
	if !ok {
		return def
	}
	return bytes.Equal(v, []byte("true"))
}

// stringParam returns the string member name of p, ok false when absent.
func stringParam(p map[string]json.RawMessage, name string) (string, bool, error) {
	v, ok := p[name]
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false, errInvalidParameter(name)
	}
	return s, true, nil
}

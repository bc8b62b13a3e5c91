// Package record is what the merge writes down about images: the origin
// record systemd 262 compares on refresh (Origin, OriginExtension, formatted
// byte for byte like sd-json by the JSON* writer) and each image's identity
// in it (ImageIdentity: path, verity hash or file handle, mount ID, times;
// DirFingerprint for directory trees), and ext-setup-root's own state file
// (State) that lets a refresh reuse verdicts. It builds on discover and config;
// the merge engine in package extension builds on it.
package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strconv"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
)

// Origin is the refresh record systemd 262 writes to
// <hierarchy>/.systemd-<class>/origin and compares on "refresh": if the
// record it would write now equals the one on disk, it skips the refresh.
// We build the same record so that the booted system's systemd-confext
// refresh recognises our merge as unchanged.
type Origin struct {
	// Mode is the effective mutable mode ("mutable.mode").
	Mode config.MutableMode
	// MutableDirs maps each configured hierarchy ("/etc") to its resolved
	// mutable dir, root-stripped ("/etc" when the mutable dir is a symlink
	// to the hierarchy). Only hierarchies whose mutable dir resolved are
	// listed; nil or empty omits "mutableDirs". Written in MutableDirOrder
	// if given (systemd's hierarchy order), else sorted.
	MutableDirs     map[string]string
	MutableDirOrder []string
	// MountOptions is $SYSTEMD_<CLASS>_OVERLAYFS_MOUNT_OPTIONS; "" omits
	// "mountOptions".
	MountOptions string
	// Extensions are the accepted images, one entry each; empty omits
	// "extensions". Written in slice order.
	Extensions []OriginExtension
}

// OriginExtension is one image's identity in the origin record.
type OriginExtension struct {
	// Name is the image name (the key).
	Name string
	// Path is the resolved image path relative to --root, with a leading
	// "/" (the absolute path without --root).
	Path string
	// VerityHash is the lowercase hex dm-verity root hash; when set, only
	// "path" and "verityHash" are written, as systemd deliberately drops
	// the weak identifiers then.
	VerityHash string
	// OnMountID is the (preferably unique) mount ID of the mount holding
	// the image.
	OnMountID uint64
	// HasHandle selects "fileHandle" (HandleType, Handle as lowercase hex)
	// over "inode".
	HasHandle  bool
	HandleType int32
	Handle     string
	Inode      uint64
	// Crtime and Mtime are microseconds (Mtime is 0 for directories).
	Crtime, Mtime uint64
}

// MarshalSystemd formats o exactly as systemd's
// sd_json_variant_format(SD_JSON_FORMAT_PRETTY|SD_JSON_FORMAT_NEWLINE)
// does: tab indentation, `"key" : value`, members separated by ",\n",
// "{}" for an empty object, one trailing newline. Keys appear in systemd's
// insertion order: mutable{mode, mutableDirs}, mountOptions, extensions,
// and per image path, verityHash | onMountId, fileHandle{type, handle} |
// inode, crtime, mtime.
func (o Origin) MarshalSystemd() []byte {
	top := JSONObject{}
	mutable := JSONObject{{"mode", JSONString(o.Mode.String())}}
	if len(o.MutableDirs) > 0 {
		dirs := JSONObject{}
		for _, h := range o.mutableDirKeys() {
			dirs = append(dirs, JSONMember{h, JSONString(o.MutableDirs[h])})
		}
		mutable = append(mutable, JSONMember{"mutableDirs", dirs})
	}
	top = append(top, JSONMember{"mutable", mutable})
	if o.MountOptions != "" {
		top = append(top, JSONMember{"mountOptions", JSONString(o.MountOptions)})
	}
	if len(o.Extensions) > 0 {
		exts := JSONObject{}
		for _, e := range o.Extensions {
			exts = append(exts, JSONMember{e.Name, e.object()})
		}
		top = append(top, JSONMember{"extensions", exts})
	}
	return append(FormatJSON(top, true), '\n')
}

func (o Origin) mutableDirKeys() []string {
	var keys []string
	seen := map[string]bool{}
	for _, h := range o.MutableDirOrder {
		if _, ok := o.MutableDirs[h]; ok && !seen[h] {
			keys = append(keys, h)
			seen[h] = true
		}
	}
	var rest []string
	for h := range o.MutableDirs {
		if !seen[h] {
			rest = append(rest, h)
		}
	}
	sortOriginStrings(rest)
	return append(keys, rest...)
}

func (e OriginExtension) object() JSONObject {
	obj := JSONObject{{"path", JSONString(e.Path)}}
	if e.VerityHash != "" {
		return append(obj, JSONMember{"verityHash", JSONString(e.VerityHash)})
	}
	obj = append(obj, JSONMember{"onMountId", JSONUnsigned(e.OnMountID)})
	if e.HasHandle {
		obj = append(obj, JSONMember{"fileHandle", JSONObject{
			{"type", JSONInteger(int64(e.HandleType))},
			{"handle", JSONString(e.Handle)},
		}})
	} else {
		obj = append(obj, JSONMember{"inode", JSONUnsigned(e.Inode)})
	}
	return append(obj,
		JSONMember{"crtime", JSONUnsigned(e.Crtime)},
		JSONMember{"mtime", JSONUnsigned(e.Mtime)})
}

// Document is a parsed origin record: a generic JSON value (objects as
// map[string]any, numbers as json.Number) so that unknown fields written by
// another systemd version take part in the comparison.
type Document struct {
	v any
}

// ParseOrigin parses an origin file (any JSON, as sd_json_parse accepts).
// A parse error makes systemd's refresh fail, and so it is an error here.
func ParseOrigin(r io.Reader) (Document, error) {
	dec := json.NewDecoder(io.LimitReader(r, 16<<20))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return Document{}, fmt.Errorf("parse origin record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Document{}, fmt.Errorf("parse origin record: trailing data after the JSON value")
	}
	return Document{v}, nil
}

// Document returns o as a generic document for Equal.
func (o Origin) Document() Document {
	d, err := ParseOrigin(bytes.NewReader(o.MarshalSystemd()))
	if err != nil {
		panic("origin: own output does not parse: " + err.Error())
	}
	return d
}

// Equal compares two origin documents like sd_json_variant_equal(): deep,
// object members in any order, arrays in order, numbers by value (so 1,
// 1.0 and 1e0 are equal and integer/unsigned never differ by type).
func Equal(a, b Document) bool { return originJSONEqual(a.v, b.v) }

func originJSONEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !originJSONEqual(xv, yv) {
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
			if !originJSONEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		return ok && originNumberEqual(x, y)
	default:
		return a == b // string, bool, nil
	}
}

func originNumberEqual(a, b json.Number) bool {
	if a == b {
		return true
	}
	ai, aok := new(big.Int).SetString(string(a), 10)
	bi, bok := new(big.Int).SetString(string(b), 10)
	if aok && bok {
		return ai.Cmp(bi) == 0
	}
	af, aerr := strconv.ParseFloat(string(a), 64)
	bf, berr := strconv.ParseFloat(string(b), 64)
	return aerr == nil && berr == nil && af == bf
}

// Get returns the value at the given object keys, for inspection (status
// output, tests); ok is false if a key is missing.
func (d Document) Get(keys ...string) (any, bool) {
	v := d.v
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// Origin extracts the typed record from d (for status output and tests).
// Extensions come out sorted by name with StrverscmpImproved, the order of
// the "extensions"/"confexts" file; unknown fields are ignored.
func (d Document) Origin() (Origin, error) {
	var o Origin
	mode, _ := d.Get("mutable", "mode")
	ms, ok := mode.(string)
	if !ok {
		return o, fmt.Errorf("origin record: mutable.mode missing or not a string")
	}
	m, err := config.ParseMutableMode(ms)
	if err != nil {
		return o, fmt.Errorf("origin record: %w", err)
	}
	o.Mode = m
	if dirs, ok := d.Get("mutable", "mutableDirs"); ok {
		dm, ok := dirs.(map[string]any)
		if !ok {
			return o, fmt.Errorf("origin record: mutable.mutableDirs is not an object")
		}
		o.MutableDirs = map[string]string{}
		for h, v := range dm {
			s, ok := v.(string)
			if !ok {
				return o, fmt.Errorf("origin record: mutableDirs[%q] is not a string", h)
			}
			o.MutableDirs[h] = s
		}
	}
	if mo, ok := d.Get("mountOptions"); ok {
		s, ok := mo.(string)
		if !ok {
			return o, fmt.Errorf("origin record: mountOptions is not a string")
		}
		o.MountOptions = s
	}
	exts, _ := d.Get("extensions")
	em, _ := exts.(map[string]any)
	for name, v := range em {
		e, ok := v.(map[string]any)
		if !ok {
			return o, fmt.Errorf("origin record: extensions[%q] is not an object", name)
		}
		x := OriginExtension{Name: name}
		x.Path, _ = e["path"].(string)
		x.VerityHash, _ = e["verityHash"].(string)
		x.OnMountID = originUint(e["onMountId"])
		x.Inode = originUint(e["inode"])
		x.Crtime = originUint(e["crtime"])
		x.Mtime = originUint(e["mtime"])
		if fh, ok := e["fileHandle"].(map[string]any); ok {
			x.HasHandle = true
			x.HandleType = int32(originUint(fh["type"]))
			x.Handle, _ = fh["handle"].(string)
		}
		o.Extensions = append(o.Extensions, x)
	}
	sortOriginExtensions(o.Extensions)
	return o, nil
}

func originUint(v any) uint64 {
	n, ok := v.(json.Number)
	if !ok {
		return 0
	}
	if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
		return u
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return uint64(i)
	}
	return 0
}

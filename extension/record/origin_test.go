package record

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
)

// goldenDir holds origin files written by the real systemd-confext 262
// (copied from the shared systemd-262-golden captures, named
// <configuration>.<file>).
const goldenDir = "testdata/golden262"

// goldenKeyOrder returns the image names in the order the golden file
// lists them (systemd's hash order), by walking the JSON tokens.
func goldenKeyOrder(t *testing.T, data []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	depth := 0
	inExt := false
	var names []string
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' {
				depth++
				expectKey = true
			} else if v == '}' {
				depth--
				if inExt && depth == 1 {
					inExt = false
				}
				expectKey = depth > 0
			}
			continue
		case string:
			if depth == 1 && expectKey && v == "extensions" {
				inExt = true
			} else if inExt && depth == 2 && expectKey {
				names = append(names, v)
			}
		}
		if dec.More() || true {
			expectKey = !expectKey
		}
	}
	return names
}

func TestOriginMarshalMatchesGolden(t *testing.T) {
	matches, _ := filepath.Glob(filepath.Join(goldenDir, "*origin*"))
	if len(matches) < 6 {
		t.Fatalf("golden origin files missing under %s: %v", goldenDir, matches)
	}
	for _, f := range matches {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := ParseOrigin(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			o, err := doc.Origin()
			if err != nil {
				t.Fatal(err)
			}
			// Reorder to systemd's (hash) order as found in the file.
			order := goldenKeyOrder(t, data)
			byName := map[string]OriginExtension{}
			for _, e := range o.Extensions {
				byName[e.Name] = e
			}
			if len(order) != len(o.Extensions) {
				t.Fatalf("token walk found %v, document has %d images", order, len(o.Extensions))
			}
			o.Extensions = o.Extensions[:0]
			for _, n := range order {
				o.Extensions = append(o.Extensions, byName[n])
			}
			got := o.MarshalSystemd()
			if !bytes.Equal(got, data) {
				t.Errorf("marshal differs from golden\n got:\n%s\nwant:\n%s", got, data)
			}
			if !Equal(o.Document(), doc) {
				t.Error("Equal(own document, golden) = false")
			}
		})
	}
}

func TestOriginMarshalShapes(t *testing.T) {
	o := Origin{Mode: config.MutableNo}
	if got := string(o.MarshalSystemd()); got != "{\n\t\"mutable\" : {\n\t\t\"mode\" : \"no\"\n\t}\n}\n" {
		t.Errorf("minimal origin:\n%q", got)
	}
	o = Origin{
		Mode:            config.MutableEphemeral,
		MutableDirs:     map[string]string{"/usr": "/run/systemd/sysext/usr", "/opt": "/run/systemd/sysext/opt"},
		MutableDirOrder: []string{"/usr", "/opt"},
		MountOptions:    "ro,\"x\"\\\n\x01",
		Extensions: []OriginExtension{
			{Name: "v", Path: "/var/lib/extensions/v.raw", VerityHash: "00ff", OnMountID: 9, Crtime: 1},
			{Name: "i", Path: "/var/lib/extensions/i", OnMountID: 7, Inode: 42, Crtime: 3, Mtime: 0},
		},
	}
	want := "{\n" +
		"\t\"mutable\" : {\n\t\t\"mode\" : \"ephemeral\",\n\t\t\"mutableDirs\" : {\n" +
		"\t\t\t\"/usr\" : \"/run/systemd/sysext/usr\",\n\t\t\t\"/opt\" : \"/run/systemd/sysext/opt\"\n\t\t}\n\t},\n" +
		"\t\"mountOptions\" : \"ro,\\\"x\\\"\\\\\\n\\u0001\",\n" +
		"\t\"extensions\" : {\n" +
		"\t\t\"v\" : {\n\t\t\t\"path\" : \"/var/lib/extensions/v.raw\",\n\t\t\t\"verityHash\" : \"00ff\"\n\t\t},\n" +
		"\t\t\"i\" : {\n\t\t\t\"path\" : \"/var/lib/extensions/i\",\n\t\t\t\"onMountId\" : 7,\n\t\t\t\"inode\" : 42,\n\t\t\t\"crtime\" : 3,\n\t\t\t\"mtime\" : 0\n\t\t}\n" +
		"\t}\n}\n"
	if got := string(o.MarshalSystemd()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	// Round trip through the generic document.
	back, err := o.Document().Origin()
	if err != nil || back.Mode != config.MutableEphemeral || back.MountOptions != o.MountOptions || len(back.Extensions) != 2 ||
		back.Extensions[0].Name != "i" || back.Extensions[1].VerityHash != "00ff" || back.MutableDirs["/opt"] != "/run/systemd/sysext/opt" {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestEqualOrderInsensitive(t *testing.T) {
	parse := func(s string) Document {
		t.Helper()
		d, err := ParseOrigin(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	base := `{"mutable":{"mode":"yes","mutableDirs":{"/etc":"/etc"}},"extensions":{"a":{"path":"/a","onMountId":2147755565,"crtime":1,"mtime":0},"b":{"path":"/b","verityHash":"ab"}}}`
	for _, tc := range []struct {
		name  string
		other string
		equal bool
	}{
		{"same", base, true},
		{"reordered", `{"extensions":{"b":{"verityHash":"ab","path":"/b"},"a":{"mtime":0,"crtime":1,"onMountId":2147755565,"path":"/a"}},"mutable":{"mutableDirs":{"/etc":"/etc"},"mode":"yes"}}`, true},
		{"numbers by value", `{"mutable":{"mode":"yes","mutableDirs":{"/etc":"/etc"}},"extensions":{"a":{"path":"/a","onMountId":2.147755565e9,"crtime":1.0,"mtime":0},"b":{"path":"/b","verityHash":"ab"}}}`, true},
		{"changed mount id", strings.Replace(base, "2147755565", "2147755566", 1), false},
		{"changed mode", strings.Replace(base, `"yes"`, `"no"`, 1), false},
		{"missing image", `{"mutable":{"mode":"yes","mutableDirs":{"/etc":"/etc"}},"extensions":{"a":{"path":"/a","onMountId":2147755565,"crtime":1,"mtime":0}}}`, false},
		{"extra field", strings.Replace(base, `"mtime":0`, `"mtime":0,"x":1`, 1), false},
		{"no mutableDirs", `{"mutable":{"mode":"yes"},"extensions":{"a":{"path":"/a","onMountId":2147755565,"crtime":1,"mtime":0},"b":{"path":"/b","verityHash":"ab"}}}`, false},
		{"string vs number", strings.Replace(base, `"crtime":1`, `"crtime":"1"`, 1), false},
	} {
		if got := Equal(parse(base), parse(tc.other)); got != tc.equal {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.equal)
		}
	}
	for _, bad := range []string{"", "{", `{"a":1} x`, "{\"a\":}"} {
		if _, err := ParseOrigin(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseOrigin(%q) accepted", bad)
		}
	}
}

package record

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseOrigin: an origin record read from a merge (untrusted: systemd
// or anyone with write access to the meta layer may have written it) never
// panics the parser; a parsed record equals itself; a typed record that
// comes out of it survives Document() and back unchanged.
func FuzzParseOrigin(f *testing.F) {
	goldens, _ := filepath.Glob("testdata/golden262/*.origin*")
	for _, g := range goldens {
		if b, err := os.ReadFile(g); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"mutable":{"mode":"yes"},"extensions":{}}`))
	f.Add([]byte(`{"mutable":{"mode":"bogus","mutableDirs":{"/etc":7}},"mountOptions":1}`))
	f.Add([]byte(`[1,2,{"a":null}] trailing`))
	f.Add([]byte(`{"mutable":{"mode":"no"},"extensions":{"x":{"path":"/a","mountId":1e400}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseOrigin(bytes.NewReader(data))
		if err != nil {
			return
		}
		if !Equal(d, d) {
			t.Fatalf("a record differs from itself")
		}
		o, err := d.Origin()
		if err != nil {
			return
		}
		d2 := o.Document()
		o2, err := d2.Origin()
		if err != nil {
			t.Fatalf("a record built from a parsed one does not parse: %v", err)
		}
		if !Equal(d2, o2.Document()) {
			t.Fatalf("round trip changed the record")
		}
	})
}

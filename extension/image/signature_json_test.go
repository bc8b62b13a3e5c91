package image

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSignatureJSON(t *testing.T) {
	good := `{"rootHash":"` + strings.Repeat("ab", 32) + `","certificateFingerprint":"` + strings.Repeat("cd", 32) + `","signature":"AQID"}`
	pad := func(s string, n int) []byte { return append([]byte(s), make([]byte, n-len(s))...) }
	s, err := ParseSignatureJSON(bytes.NewReader(pad(good, 4096)), 4096)
	if err != nil || len(s.RootHash) != 32 || len(s.CertFingerprint) != 32 || !bytes.Equal(s.PKCS7, []byte{1, 2, 3}) {
		t.Fatalf("%+v %v", s, err)
	}
	for _, c := range []struct {
		b    []byte
		size int64
		rule string
	}{
		{pad(good, 4096), 5 << 20, "outside"},
		{append(pad(good, 4000), 'x'), 4001, "after the JSON"},
		{pad(`{"rootHash":"zz","signature":"AQID"}`, 100), 100, "rootHash"},
		{pad(`{"rootHash":"`+strings.Repeat("ab", 32)+`"}`, 100), 100, "lacks"},
		{pad(`{"rootHash":"`+strings.Repeat("ab", 32)+`","signature":"!!"}`, 100), 100, "base64"},
		{pad(`{} {}`, 100), 100, "more than one"},
		{pad(`[`, 100), 100, "invalid JSON"},
	} {
		if _, err := ParseSignatureJSON(bytes.NewReader(c.b), c.size); err == nil || !strings.Contains(err.Error(), c.rule) {
			t.Errorf("%q: %v", c.rule, err)
		}
	}
}

func FuzzParseSignatureJSON(f *testing.F) {
	f.Add([]byte(`{"rootHash":"` + strings.Repeat("ab", 32) + `","signature":"AQID"}` + "\x00\x00\x00"))
	f.Add([]byte(`{"rootHash":"00","signature":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignatureJSON(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if len(s.RootHash) < 16 || len(s.RootHash) > 64 || len(s.PKCS7) == 0 {
			t.Fatalf("%+v", s)
		}
	})
}

package release

import (
	"bytes"
	"strings"
	"testing"
)

// osReleaseSeeds are os-release and extension-release texts from the
// fixtures (Flatcar's, the QEMU images', the parser tests') plus syntax
// corner cases.
var osReleaseSeeds = []string{
	"ID=flatcar\nVERSION=4000.0.0\nVERSION_ID=4000.0.0\nSYSEXT_LEVEL=1.0\n",
	"NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nID_LIKE=coreos\nVERSION=3975.2.0\nPRETTY_NAME=\"Flatcar Container Linux by Kinvolk 3975.2.0 (Oklo)\"\n",
	"ID=_any\n",
	"ID=flatcar\nVERSION_ID=1000.0.0\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n",
	"ID=debian\nVERSION_ID=13\nCONFEXT_LEVEL=2\nCONFEXT_SCOPE=initrd system\n",
	"# comment\n\nKEY='single quoted'\nK2=\"double \\\"escaped\\\" \\$x\"\nK3=a\\ b\n",
	"UNTERMINATED=\"abc\nNEXT=1\n",
	"NOEQUALS\n=novalue\nK=v=w\n",
	"K=\"\\\n\"\r\nK2=\xff\xfe\n",
}

// FuzzParse: os-release parsing never panics, returns keys without
// newlines, and agrees with ParseDetailed.
func FuzzParse(f *testing.F) {
	for _, s := range osReleaseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(bytes.NewReader(data), "fuzz")
		m2, issues, err2 := ParseDetailed(bytes.NewReader(data), "fuzz")
		if (err == nil) != (err2 == nil) || len(m) != len(m2) {
			t.Fatalf("Parse and ParseDetailed disagree: %v / %v", err, err2)
		}
		for k, v := range m {
			// A key may start with '=' ("==0" is key "=", as in systemd's
			// parser), but never holds a newline and is never empty.
			if k == "" || strings.ContainsAny(k, "\n") {
				t.Fatalf("bad key %q", k)
			}
			if m2[k] != v {
				t.Fatalf("key %q: %q vs %q", k, v, m2[k])
			}
		}
		for _, is := range issues {
			if is.Line < 1 {
				t.Fatalf("issue without a line: %+v", is)
			}
		}
	})
}

// FuzzValidate: the extension-release decision never panics, is
// deterministic, and refuses with a reason.
func FuzzValidate(f *testing.F) {
	for _, ext := range osReleaseSeeds {
		f.Add([]byte(ext), []byte(osReleaseSeeds[0]), "system", "x86-64")
	}
	f.Add([]byte("ID=flatcar\nSYSEXT_LEVEL=1.0\n"), []byte("ID=flatcar\nSYSEXT_LEVEL=1.0\n"), "initrd", "arm64")
	f.Fuzz(func(t *testing.T, ext, host []byte, scope, arch string) {
		em, err := Parse(bytes.NewReader(ext), "ext")
		if err != nil {
			return
		}
		hm, err := Parse(bytes.NewReader(host), "host")
		if err != nil {
			return
		}
		h := HostFromFields(hm)
		for _, key := range [][2]string{{"SYSEXT_SCOPE", "SYSEXT_LEVEL"}, {"CONFEXT_SCOPE", "CONFEXT_LEVEL"}} {
			o := Options{ScopeKey: key[0], LevelKey: key[1], Scope: scope, Arch: arch}
			ok, reason, err := Validate(em, h, o)
			ok2, reason2, err2 := Validate(em, h, o)
			if ok != ok2 || reason != reason2 || (err == nil) != (err2 == nil) {
				t.Fatalf("not deterministic")
			}
			if !ok && err == nil && reason == "" {
				t.Fatalf("refused without a reason")
			}
		}
	})
}

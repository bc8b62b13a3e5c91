package release

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		issues   int
	}{
		{"plain", "ID=fedora\nVERSION_ID=40\n", map[string]string{"ID": "fedora", "VERSION_ID": "40"}, 0},
		{"no trailing newline", "ID=x", map[string]string{"ID": "x"}, 0},
		{"blank and comments", "\n# c\n; c2\n  # indented\nID=a\n\n", map[string]string{"ID": "a"}, 0},
		{"double quotes", `NAME="Fedora Linux"` + "\n", map[string]string{"NAME": "Fedora Linux"}, 0},
		{"single quotes literal", `A='x\"y $z'` + "\n", map[string]string{"A": `x\"y $z`}, 0},
		{"double quote escapes", `A="q\" b\\ d\$ e\` + "`" + ` n\n"` + "\n", map[string]string{"A": `q" b\ d$ e` + "`" + ` n\n`}, 0},
		{"unquoted escape", `A=a\ b\\c\"` + "\n", map[string]string{"A": `a b\c"`}, 0},
		{"backslash newline continues", "A=one\\\ntwo\nB=x\n", map[string]string{"A": "onetwo", "B": "x"}, 0},
		{"double quoted continuation", "A=\"one\\\ntwo\"\n", map[string]string{"A": "onetwo"}, 0},
		{"multi-line double quote", "A=\"one\ntwo\"\n", map[string]string{"A": "one\ntwo"}, 0},
		{"whitespace trimmed", "  KEY  =   spaced value   \n", map[string]string{"KEY": "spaced value"}, 0},
		{"escaped trailing space kept", "A=x\\ \n", map[string]string{"A": "x "}, 0},
		{"concatenation", `A="a"'b'c "d"` + "\n", map[string]string{"A": `abc "d"`}, 0},
		{"quoted parts skip whitespace between", `A="a" 'b'` + "\n", map[string]string{"A": "ab"}, 0},
		{"empty values", "A=\nB=\"\"\nC=''\n", map[string]string{"A": "", "B": "", "C": ""}, 0},
		{"later wins", "ID=a\nID=b\n", map[string]string{"ID": "b"}, 0},
		{"no equals ignored", "JUNK\nID=a\n", map[string]string{"ID": "a"}, 1},
		{"no equals at eof", "ID=a\nJUNK", map[string]string{"ID": "a"}, 1},
		{"unterminated quote runs to eof", "A=\"open\nB=c\n", map[string]string{"A": "open\nB=c\n"}, 1},
		{"hash inside value", "A=x#y\n", map[string]string{"A": "x#y"}, 0},
		{"comment backslash does not continue", "# c \\\nID=a\n", map[string]string{"ID": "a"}, 0},
		{"crlf", "ID=a\r\nV=b\r\n", map[string]string{"ID": "a", "V": "b"}, 0},
		{"nul stops parsing", "ID=a\nV=b\x00\nX=y\n", map[string]string{"ID": "a", "V": "b"}, 0},
		{"equals in value", "A=b=c\n", map[string]string{"A": "b=c"}, 0},
		{"utf8 value", "NAME=Flätcar\n", map[string]string{"NAME": "Flätcar"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, issues, err := ParseDetailed(strings.NewReader(tc.in), "f")
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if len(issues) != tc.issues {
				t.Errorf("issues %v, want %d", issues, tc.issues)
			}
		})
	}
}

func TestParseInvalidUTF8NamesFileAndLine(t *testing.T) {
	for _, in := range []string{"ID=a\n\nNAME=\xff\n", "ID=a\n\nN\xffE=x\n"} {
		_, err := Parse(strings.NewReader(in), "/etc/extension-release.d/extension-release.foo")
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Fatalf("%q: err = %v, want *SyntaxError", in, err)
		}
		if se.Line != 3 || !strings.HasPrefix(err.Error(), "/etc/extension-release.d/extension-release.foo:3: ") {
			t.Errorf("%q: err = %v, want file:3", in, err)
		}
	}
}

func TestParseIssueLine(t *testing.T) {
	_, issues, err := ParseDetailed(strings.NewReader("ID=a\n\"quoted\nV=1\n"), "x.conf")
	if err != nil {
		t.Fatal(err)
	}
	if len(issues) != 1 || issues[0].Line != 2 || issues[0].File != "x.conf" {
		t.Errorf("issues = %v, want one on x.conf:2", issues)
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse(strings.NewReader(strings.Repeat("A=b\n", MaxFileSize/4+1)), "big")
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *SyntaxError", err)
	}
}

package measure

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/ext-setup-root/ext-setup-root/internal/varlink"
)

const rootHashHex = "5e1d0e3c6f0c52cbd1e0a4a8bb7d4d7fa6e3e7c1b4a2c90a9f1d6b8e2c3a4f50"

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c - 'a' + 10)
			default:
				t.Fatalf("bad hex %q", s)
			}
		}
		b[i] = v
	}
	return b
}

func TestVerityWordUnsigned(t *testing.T) {
	w, err := VerityWord("loop3p1-42-verity", mustHex(t, rootHashHex), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "verity:loop3p1-42-verity:" + rootHashHex + ":"; w != want {
		t.Errorf("word %q, want %q", w, want)
	}
	if _, err := VerityWord("", mustHex(t, rootHashHex), nil); err == nil {
		t.Error("empty name accepted")
	}
	if _, err := VerityWord("x", nil, nil); err == nil {
		t.Error("empty root hash accepted")
	}
}

// TestXescape: systemd's xescape(name, ":") turns ':', '\', control
// characters and bytes >= 127 into \xNN and keeps everything else.
func TestXescape(t *testing.T) {
	for in, want := range map[string]string{
		"loop0p1-7-verity":   "loop0p1-7-verity",
		"a:b":                `a\x3ab`,
		`back\slash`:         `back\x5cslash`,
		"tab\tnl\n\x7f\x80ÿ": `tab\x09nl\x0a\x7f\x80\xc3\xbf`,
		" ~!":                " ~!",
	} {
		if got := xescape(in, ":"); got != want {
			t.Errorf("xescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// testCert makes a self-signed certificate with the given serial and CN.
func testCert(t testing.TB, serial *big.Int, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn, Organization: []string{"ext-setup-root test"}},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1900000000, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// signedBy makes a detached PKCS#7 signature of the root hash (as hex, as
// systemd-repart signs it) by each certificate in turn.
func signedBy(t testing.TB, certs []*x509.Certificate, keys []*ecdsa.PrivateKey) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData([]byte(rootHashHex))
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	for i := range certs {
		if err := sd.AddSigner(certs[i], keys[i], pkcs7.SignerInfoConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestVerityWordSigners: each SignerInfo as hex of the serial's whole DER
// INTEGER (a 00 pad byte where the high bit is set) "/" base64 of the
// issuer Name's DER, joined by ',' in the signature's order. The serials' DER is written
// out by hand here, not computed by the code under test.
func TestVerityWordSigners(t *testing.T) {
	c1, k1 := testCert(t, big.NewInt(0x80), "first")
	c2, k2 := testCert(t, big.NewInt(0x1234), "second")
	sig := signedBy(t, []*x509.Certificate{c1, c2}, []*ecdsa.PrivateKey{k1, k2})
	w, err := VerityWord("loop3p1-42-verity", mustHex(t, rootHashHex), sig)
	if err != nil {
		t.Fatal(err)
	}
	// In the order of the SignerInfos in the DER, as systemd measures them.
	// SignerInfos is a DER SET OF, which the encoder sorts by encoding (so
	// by the random signature bytes, not by AddSigner's order); signerInfos
	// is SignedData's last field, so each issuer's last occurrence in the
	// DER is in its SignerInfo.
	e1 := "02020080/" + base64.StdEncoding.EncodeToString(c1.RawIssuer)
	e2 := "02021234/" + base64.StdEncoding.EncodeToString(c2.RawIssuer)
	if bytes.LastIndex(sig, c2.RawIssuer) < bytes.LastIndex(sig, c1.RawIssuer) {
		e1, e2 = e2, e1
	}
	want := "verity:loop3p1-42-verity:" + rootHashHex + ":" + e1 + "," + e2
	if w != want {
		t.Errorf("word\n %q\nwant\n %q", w, want)
	}
	if _, err := VerityWord("x", mustHex(t, rootHashHex), []byte("not PKCS#7")); err == nil {
		t.Error("garbage signature: a word was built (systemd measures nothing then)")
	}
}

// TestExtendVerityCall: the exact message a fake io.systemd.PCRExtend
// receives, and that its error replies and a missing socket come back as
// errors (the caller then goes on).
func TestExtendVerityCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "io.systemd.PCRExtend")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 2)
	reply := make(chan string, 2)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			m, err := varlink.ReadMessage(bufio.NewReader(c), varlink.MaxMessage)
			if err == nil {
				got <- string(m)
				c.Write([]byte(<-reply + "\x00"))
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	word := `verity:loop3p1-42-verity:` + rootHashHex + `:`
	reply <- `{"parameters":{}}`
	if err := ExtendVerity(ctx, path, word); err != nil {
		t.Fatal(err)
	}
	want := `{"method":"io.systemd.PCRExtend.Extend","parameters":{"nvpcr":"verity","text":"` + word + `","eventType":"dm_verity"}}`
	if m := <-got; m != want {
		t.Errorf("sent\n %s\nwant\n %s", m, want)
	}
	reply <- `{"error":"io.systemd.PCRExtend.NoSuchNvPCR","parameters":{}}`
	var ve *varlink.Error
	if err := ExtendVerity(ctx, path, word); !errors.As(err, &ve) || ve.Name != "io.systemd.PCRExtend.NoSuchNvPCR" {
		t.Errorf("NoSuchNvPCR reply: %v", err)
	}
	<-got
	if err := ExtendVerity(ctx, filepath.Join(t.TempDir(), "none"), word); err == nil {
		t.Error("missing socket: no error")
	}
}

// FuzzVerityWord: hostile signatures and names never panic, and a word
// that is built always has exactly four ':'-separated fields (the name is
// escaped; hex and base64 hold no ':').
func FuzzVerityWord(f *testing.F) {
	c, k := testCert(f, big.NewInt(3), "fuzz")
	f.Add("loop0p1-1-verity", signedBy(f, []*x509.Certificate{c}, []*ecdsa.PrivateKey{k}))
	f.Add("loop0p1-1-verity", []byte{})
	f.Add("a:b\\", []byte("\x30\x03\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, name string, sig []byte) {
		w, err := VerityWord(name, []byte{1, 2, 3}, sig)
		if err != nil {
			return
		}
		if !strings.HasPrefix(w, "verity:") || strings.Count(w, ":") != 3 {
			t.Fatalf("word %q has not four fields", w)
		}
	})
}

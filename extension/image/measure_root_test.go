package image

import (
	"bufio"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/measure"

	"github.com/ext-setup-root/ext-setup-root/internal/varlink"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// Every test of this package that activates a verity device would ask the
// host's systemd to measure it: point the socket at a path that does not
// exist, unless a test serves one (fakePCRExtend).
func init() { paths.PCRExtendSocket = "/nonexistent/ext-setup-root-test/io.systemd.PCRExtend" }

// fakePCRExtend serves io.systemd.PCRExtend on a unix socket in a temp
// dir: it sends each call's message to the returned channel and answers
// with reply. paths.PCRExtendSocket points at it for the test.
func fakePCRExtend(t *testing.T, reply string) (string, <-chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "io.systemd.PCRExtend")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if m, err := varlink.ReadMessage(bufio.NewReader(c), varlink.MaxMessage); err == nil {
				calls <- string(m)
				c.Write([]byte(reply + "\x00"))
			}
			c.Close()
		}
	}()
	old := paths.PCRExtendSocket
	paths.PCRExtendSocket = sock
	t.Cleanup(func() { paths.PCRExtendSocket = old; l.Close() })
	return sock, calls
}

func extendCall(word string) string {
	return `{"method":"io.systemd.PCRExtend.Extend","parameters":{"nvpcr":"verity","text":"` + word + `","eventType":"dm_verity"}}`
}

func noCall(t *testing.T, calls <-chan string, what string) {
	t.Helper()
	select {
	case m := <-calls:
		t.Errorf("%s: measured %s", what, m)
	default:
	}
}

// TestSetupVerityMeasured: a new activation is measured once, with the
// device's own name and the root hash; the activation goes on when the
// service answers with an error or is not there; a reused device and a
// failed set-up are not measured.
func TestSetupVerityMeasured(t *testing.T) {
	img, d := gptImage(t, false)
	_, calls := fakePCRExtend(t, `{"parameters":{}}`)
	dev, err := fakeEnv(newFakeDM()).setupMeasured(openImg(t, img), d, SetupOptions{Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-calls:
		if want := extendCall("verity:" + dev.Name + ":" + testRootHash + ":"); m != want {
			t.Errorf("measured\n %s\nwant\n %s", m, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("activation not measured")
	}
	noCall(t, calls, "one activation")
	dev.Close()

	// The service refuses (no verity NvPCR): set-up succeeds all the same.
	_, calls = fakePCRExtend(t, `{"error":"io.systemd.PCRExtend.NoSuchNvPCR","parameters":{}}`)
	dev, err = fakeEnv(newFakeDM()).setupMeasured(openImg(t, img), d, SetupOptions{Name: "ext"})
	if err != nil {
		t.Fatalf("refused measurement failed the set-up: %v", err)
	}
	<-calls
	dev.Close()
	// No socket at all: the same.
	paths.PCRExtendSocket = filepath.Join(t.TempDir(), "none")
	dev, err = fakeEnv(newFakeDM()).setupMeasured(openImg(t, img), d, SetupOptions{Name: "ext"})
	if err != nil {
		t.Fatalf("missing socket failed the set-up: %v", err)
	}
	dev.Close()
	requireNoLoops(t, img, "Close")

	// A live device with the same root hash is reused: no measurement,
	// as systemd does not measure its "check" path.
	_, calls = fakePCRExtend(t, `{"parameters":{}}`)
	f := newFakeDM()
	dev, err = fakeEnv(f).setupMeasured(openImg(t, img), d, SetupOptions{Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	<-calls
	f.devs[dev.Name].open = 1 // a mount holds it, as in TestSetupVerityReuse
	dev.Mounted()
	again, err := fakeEnv(f).setupMeasured(openImg(t, img), d, SetupOptions{Name: "ext"})
	if err != nil || !again.Reused {
		t.Fatalf("second set-up: %v, reused %v", err, again != nil && again.Reused)
	}
	noCall(t, calls, "reused device")

	// A set-up that fails (table refused) is not measured.
	f = newFakeDM()
	f.fail = map[uint]error{unix.DM_TABLE_LOAD: unix.EINVAL}
	if _, err := fakeEnv(f).setupMeasured(openImg(t, img), d, SetupOptions{Name: "ext"}); err == nil {
		t.Fatal("set-up with a refused table succeeded")
	}
	noCall(t, calls, "failed set-up")
	requireNoLoops(t, img, "failed set-up")
}

// TestVerityWordRepartSignature: the signers field of the word for a DDI
// signed by systemd-repart (a certificate made by openssl, its serial
// random and 20 bytes long) is hex of the serial's DER INTEGER and base64
// of the issuer's DER, both taken here from the certificate file rather
// than from the signature the code under test parses.
func TestVerityWordRepartSignature(t *testing.T) {
	ddi := buildDDI(t, ddiSpec{Class: "confext", FS: "erofs", Signed: true})
	d, err := dissectFile(t, ddi.Path, DissectOptions{Architecture: "x86-64"})
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(ddi.Cert)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatalf("%s: not PEM", ddi.Cert)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// TBSCertificate: SEQUENCE { [0] version, serialNumber INTEGER, ... }.
	var tbs, version, serial asn1.RawValue
	rest, err := asn1.Unmarshal(cert.RawTBSCertificate, &tbs)
	if err != nil || len(rest) != 0 {
		t.Fatal(err)
	}
	inner, err := asn1.Unmarshal(tbs.Bytes, &version)
	if err == nil {
		_, err = asn1.Unmarshal(inner, &serial)
	}
	if err != nil || version.Tag != 0 || serial.Tag != asn1.TagInteger {
		t.Fatalf("certificate serial not found: %v", err)
	}
	sig := d.Verity.Signature.PKCS7
	word, err := measure.VerityWord("loop0p1-1-verity", d.Verity.RootHash, sig)
	if err != nil {
		t.Fatal(err)
	}
	want := "verity:loop0p1-1-verity:" + hex.EncodeToString(d.Verity.RootHash) + ":" +
		hex.EncodeToString(serial.FullBytes) + "/" + base64.StdEncoding.EncodeToString(cert.RawIssuer)
	if word != want {
		t.Errorf("word\n %s\nwant\n %s", word, want)
	}
	t.Logf("serial DER %x (%d bytes)", serial.FullBytes, len(serial.FullBytes))
}

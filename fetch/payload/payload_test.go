package payload_test

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// keys returns the trusted test key and another one.
func keys(testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	return payloadtest.KeyA(), payloadtest.KeyB()
}

// testImage is compressible in parts and random in others, so Auto mode
// yields both REPLACE and REPLACE_BZ operations.
func testImage(size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewSource(1))
	for i := 0; i < size; i += 1 << 20 {
		end := min(i+1<<20, size)
		if (i>>20)%2 == 0 {
			for j := i; j < end; j++ {
				b[j] = byte(j / 4096)
			}
		} else {
			r.Read(b[i:end])
		}
	}
	return b
}

// run receives and extracts p with the trusted key.
func run(p []byte, lim payload.Limits, trusted ...*rsa.PublicKey) ([]byte, error) {
	var stored bytes.Buffer
	v, err := payload.Receive(bytes.NewReader(p), &stored, trusted, lim)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(stored.Bytes(), p) {
		return nil, errors.New("stored payload differs from the input")
	}
	var img bytes.Buffer
	if err := payload.Extract(v, bytes.NewReader(stored.Bytes()), &img); err != nil {
		return nil, err
	}
	return img.Bytes(), nil
}

func build(t *testing.T, img []byte, o payloadtest.Options) []byte {
	t.Helper()
	if o.Compression != payloadtest.Replace {
		testutil.RequireTool(t, "bzip2")
	}
	p, err := payloadtest.Build(img, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGoodPayloads(t *testing.T) {
	a, b := keys(t)
	img := testImage(3<<20 + 12345) // a short last chunk, not block-aligned
	for _, tc := range []struct {
		name string
		o    payloadtest.Options
	}{
		{"replace one signature", payloadtest.Options{Keys: []*rsa.PrivateKey{a}, Compression: payloadtest.Replace}},
		{"replace_bz one signature", payloadtest.Options{Keys: []*rsa.PrivateKey{a}, Compression: payloadtest.ReplaceBZ}},
		{"auto, dummy signature first", payloadtest.Options{Keys: []*rsa.PrivateKey{b, a}}},
		{"auto, valid signature first", payloadtest.Options{Keys: []*rsa.PrivateKey{a, b}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := build(t, img, tc.o)
			got, err := run(p, payload.Limits{}, &a.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img) {
				t.Fatal("extracted image differs")
			}
		})
	}
}

// TestRefused breaks one rule per case; each must be refused by Receive
// (before any decompression) or, for signed-but-inconsistent payloads, by
// Extract, with an error naming the rule.
func TestRefused(t *testing.T) {
	a, b := keys(t)
	img := testImage(2<<20 + 4096)
	one := []*rsa.PrivateKey{a}
	good := build(t, img, payloadtest.Options{Keys: one})
	flip := func(off int) []byte {
		p := bytes.Clone(good)
		p[off] ^= 0x01
		return p
	}
	mlen := int(good[19]) | int(good[18])<<8 | int(good[17])<<16
	cases := []struct {
		name, want string
		p          []byte
		lim        payload.Limits
	}{
		{"wrong key", "signature: none of 1", build(t, img, payloadtest.Options{Keys: []*rsa.PrivateKey{b}}), payload.Limits{}},
		{"two wrong signatures", "signature: none of 2", build(t, img, payloadtest.Options{Keys: []*rsa.PrivateKey{b, b}}), payload.Limits{}},
		{"altered manifest byte", "", flip(20 + mlen - 3), payload.Limits{}},
		{"altered data byte", "signature", flip(20 + mlen + 1000), payload.Limits{}},
		{"altered signature byte", "signature", flip(len(good) - 10), payload.Limits{}},
		{"truncated in data", "truncated", good[:len(good)/2], payload.Limits{}},
		{"truncated in signature", "signature blob: truncated", good[:len(good)-1], payload.Limits{}},
		{"truncated header", "shorter than 20", good[:10], payload.Limits{}},
		{"trailing bytes", "trailing bytes", append(bytes.Clone(good), 0), payload.Limits{}},
		{"oversize declared", "configured maximum", good, payload.Limits{MaxImage: 1 << 20}},
		{"manifest size over limit", "manifest size", good, payload.Limits{MaxManifest: 16}},
		{"bad magic", "magic", append([]byte("CrAV"), good[4:]...), payload.Limits{}},
		{"version 2", "version 2", append(append([]byte("CrAU"), 0, 0, 0, 0, 0, 0, 0, 2), good[12:]...), payload.Limits{}},
		{"MOVE refused", "type 2 refused", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.Ops[1].Type = 2 }}), payload.Limits{}},
		{"BSDIFF refused", "type 3 refused", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.Ops[0].Type = 3 }}), payload.Limits{}},
		{"unsigned", "unsigned payload", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.NoSigField = true }}), payload.Limits{}},
		{"gap in blobs", "contiguous", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.Ops[1].DataOffset++ }}), payload.Limits{}},
		{"extents out of order", "fill the image in order", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) {
			m.Ops[0].DstStart, m.Ops[1].DstStart = m.Ops[1].DstStart, m.Ops[0].DstStart
		}}), payload.Limits{}},
		{"two extents", "exactly one destination", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.Ops[0].TwoDst = true }}), payload.Limits{}},
		{"source extent", "exactly one destination", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.Ops[0].SrcExtent = true }}), payload.Limits{}},
		{"no op hash", "data_sha256_hash", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.Ops[0].OmitHash = true }}), payload.Limits{}},
		{"signed wrong op hash", "does not match its data_sha256_hash", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.Ops[1].Hash = make([]byte, 32) }}), payload.Limits{}},
		{"signed wrong image hash", "SHA-256 does not match", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.NewHash = make([]byte, 32) }}), payload.Limits{}},
		{"signed image larger than ops", "operations cover", build(t, img, payloadtest.Options{Keys: one, EditManifest: func(m *payloadtest.Manifest) { m.NewSize += 1 << 20 }}), payload.Limits{}},
		{"signature size over limit", "signature blob size", good, payload.Limits{MaxSignatures: 100}},
		{"too many operations", "more than 2 operations", good, payload.Limits{MaxOps: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(tc.p, tc.lim, &a.PublicKey)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestOversizeActualDecompression: a signed REPLACE_BZ blob that
// decompresses to more than its extent (cut at the image end) is refused
// at the bound, not written in full.
func TestOversizeActualDecompression(t *testing.T) {
	a, _ := keys(t)
	img := testImage(2 * 4096)
	half := img[:4096]
	p := build(t, img, payloadtest.Options{Keys: []*rsa.PrivateKey{a}, Compression: payloadtest.ReplaceBZ, ChunkSize: 8192,
		EditManifest: func(m *payloadtest.Manifest) {
			m.NewSize = 4096
			m.Ops[0].DstBlocks = 1
			h := sha256sum(half)
			m.NewHash = h
		}})
	_, err := run(p, payload.Limits{}, &a.PublicKey)
	if err == nil || !strings.Contains(err.Error(), "extracted 4097 bytes, its extent takes 4096") {
		t.Fatalf("got %v", err)
	}
}

// TestNoDecompressionBeforeSignature: a payload whose REPLACE_BZ blob is
// not bzip2 at all and whose signature is bad fails on the signature:
// Receive never looked inside the blob.
func TestNoDecompressionBeforeSignature(t *testing.T) {
	a, b := keys(t)
	img := testImage(4096)
	p := build(t, img, payloadtest.Options{Keys: []*rsa.PrivateKey{b}, Compression: payloadtest.Replace,
		EditManifest: func(m *payloadtest.Manifest) { m.Ops[0].Type = 1 }})
	_, err := run(p, payload.Limits{}, &a.PublicKey)
	if err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("got %v, want a signature error", err)
	}
	// Signed with the trusted key, the same blob fails in Extract.
	p = build(t, img, payloadtest.Options{Keys: []*rsa.PrivateKey{a}, Compression: payloadtest.Replace,
		EditManifest: func(m *payloadtest.Manifest) { m.Ops[0].Type = 1 }})
	_, err = run(p, payload.Limits{}, &a.PublicKey)
	if err == nil || !strings.Contains(err.Error(), "cannot extract") {
		t.Fatalf("got %v, want an extraction error", err)
	}
}

// TestReceiveReadsBounded: a header declaring a huge manifest is refused
// after reading the 20 header bytes, nothing more.
func TestReceiveReadsBounded(t *testing.T) {
	a, _ := keys(t)
	hdr := append([]byte("CrAU"), 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	cr := &countReader{r: io.MultiReader(bytes.NewReader(hdr), zeroReader{})}
	_, err := payload.Receive(cr, io.Discard, []*rsa.PublicKey{&a.PublicKey}, payload.Limits{})
	if err == nil || !strings.Contains(err.Error(), "manifest size") {
		t.Fatalf("got %v", err)
	}
	if cr.n != 20 {
		t.Fatalf("read %d bytes, want 20", cr.n)
	}
}

func TestReadPublicKey(t *testing.T) {
	a, _ := keys(t)
	k, err := payload.ReadPublicKey(bytes.NewReader(payloadtest.PublicPEM(a)), "key.pem")
	if err != nil || k.N.Cmp(a.N) != 0 {
		t.Fatalf("got %v", err)
	}
	if _, err := payload.ReadPublicKey(strings.NewReader("junk"), "key.pem"); err == nil || !strings.Contains(err.Error(), "key.pem") {
		t.Fatalf("junk accepted or unnamed: %v", err)
	}
}

type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

package payload_test

import (
	"bytes"
	"crypto/rsa"
	"io"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
)

// FuzzParseManifest: any bytes give a checked manifest or an error, never
// a panic or an unbounded allocation.
func FuzzParseManifest(f *testing.F) {
	a, _ := keys(f)
	p, err := payloadtest.Build(testImage(3*4096), payloadtest.Options{Keys: []*rsa.PrivateKey{a}, Compression: payloadtest.Replace, ChunkSize: 4096})
	if err != nil {
		f.Fatal(err)
	}
	mlen := int(p[19]) | int(p[18])<<8
	f.Add(p[20 : 20+mlen])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := payload.ParseManifest(b, payload.Limits{MaxImage: 1 << 30})
		if err == nil && (len(m.Ops) == 0 || m.NewSize == 0) {
			t.Fatal("accepted an empty manifest")
		}
		payload.ParseSignatures(b)
	})
}

// FuzzReceive: any payload bytes are refused or verify with the trusted
// key and then extract to exactly the declared size.
func FuzzReceive(f *testing.F) {
	a, _ := keys(f)
	for _, n := range []int{4096, 3*4096 + 7} {
		p, err := payloadtest.Build(testImage(n), payloadtest.Options{Keys: []*rsa.PrivateKey{a}, Compression: payloadtest.Replace, ChunkSize: 4096})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var stored bytes.Buffer
		v, err := payload.Receive(bytes.NewReader(p), &stored, []*rsa.PublicKey{&a.PublicKey}, payload.Limits{MaxImage: 1 << 20})
		if err != nil {
			return
		}
		var img bytes.Buffer
		if err := payload.Extract(v, bytes.NewReader(stored.Bytes()), io.Writer(&img)); err == nil && uint64(img.Len()) != v.Manifest().NewSize {
			t.Fatalf("extracted %d bytes, manifest says %d", img.Len(), v.Manifest().NewSize)
		}
	})
}

package payloadtest

import (
	"crypto/rsa"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
)

// Two throwaway RSA-2048 keys made for these tests only (openssl
// genpkey), embedded so that tests and fuzz workers do not spend seconds
// generating keys: KeyA plays the trusted update key, KeyB anybody else's.
var (
	//go:embed testdata/key-a.pem
	keyAPEM []byte
	//go:embed testdata/key-b.pem
	keyBPEM []byte
)

// KeyA and KeyB return the embedded test keys.
func KeyA() *rsa.PrivateKey { return mustKey(keyAPEM) }
func KeyB() *rsa.PrivateKey { return mustKey(keyBPEM) }

func mustKey(b []byte) *rsa.PrivateKey {
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		panic(err)
	}
	return k.(*rsa.PrivateKey)
}

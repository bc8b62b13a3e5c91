package payload

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
)

// maxKeyFile bounds a public key file read by ReadPublicKey.
const maxKeyFile = 64 << 10

// ReadPublicKey reads a PEM "PUBLIC KEY" (SubjectPublicKeyInfo, the form
// of update-payload-key.pub.pem) holding an RSA key of 2048 to 4096 bits.
// name is used in errors.
func ReadPublicKey(r io.Reader, name string) (*rsa.PublicKey, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxKeyFile)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: no PEM PUBLIC KEY block", name)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA key (%T)", name, k)
	}
	if n := rk.N.BitLen(); n < 2048 || n > 4096 {
		return nil, fmt.Errorf("%s: RSA key of %d bits (2048 to 4096 accepted)", name, n)
	}
	return rk, nil
}

// verifySignatures accepts when any signature verifies digest (the
// SHA-256 of the signed range) with any key, as RSASSA-PKCS1-v1_5 with
// the SHA-256 DigestInfo. Production payloads may carry a second
// signature by a throwaway key, so one failing entry is not an error.
func verifySignatures(sigs [][]byte, digest []byte, keys []*rsa.PublicKey) error {
	if len(keys) == 0 {
		return errf("signature: no trusted key configured")
	}
	for _, s := range sigs {
		for _, k := range keys {
			if len(s) == k.Size() && rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, s) == nil {
				return nil
			}
		}
	}
	return errf("signature: none of %d signatures verifies with the trusted key", len(sigs))
}

// signedHash is the hash the signatures cover.
var signedHash = sha256.New

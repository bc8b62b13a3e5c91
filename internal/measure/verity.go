// Package measure asks systemd to measure what ext-setup-root activates,
// the way systemd itself does, so that an image whose boot is attested is
// not worse off with us: for every new dm-verity activation, systemd 260+
// extends the word "verity:<dm name>:<root hash>:<signers>" into the
// "verity" NvPCR through the Varlink service io.systemd.PCRExtend
// (systemd-pcrextend), which also writes the record to
// /run/log/systemd/tpm2-measure.log. We make the same call with the same
// word and event type; systemd does the TPM work. Where there is no TPM, no
// NvPCR or no socket, the call fails and the activation goes on, as with
// systemd. The facts are in docs/measure.md.
package measure

import (
	"context"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/ext-setup-root/ext-setup-root/internal/varlink"
)

const (
	// Method is the Varlink method systemd's dissect code calls.
	Method = "io.systemd.PCRExtend.Extend"
	// VerityNvPCR is the NvPCR dm-verity activations go into.
	VerityNvPCR = "verity"
	// VerityEventType is the Varlink enum value systemd sends; the log
	// record shows it dashified, "dm-verity".
	VerityEventType = "dm_verity"
	// Timeout bounds one call, as sd-varlink's default method timeout
	// (45 s) bounds systemd's: the service may be socket-activated and
	// talk to a slow TPM.
	Timeout = 45 * time.Second
)

// Signer is one PKCS#7 SignerInfo as systemd measures it: the DER of the
// issuerAndSerialNumber's serial (the whole INTEGER, tag and length
// included) and of its issuer Name.
type Signer struct {
	SerialDER []byte
	IssuerDER []byte
}

// Signers returns the SignerInfos of a DER (or BER) PKCS#7 signature, in
// order. The signature comes from the image: hostile input. Its size is
// bounded by whoever read it, and every signer takes bytes of it, so the
// count is bounded too.
func Signers(der []byte) ([]Signer, error) {
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("root hash signature: not PKCS#7: %w", err)
	}
	out := make([]Signer, 0, len(p7.Signers))
	for i, si := range p7.Signers {
		ias := si.IssuerAndSerialNumber
		if ias.SerialNumber == nil || len(ias.IssuerName.FullBytes) == 0 {
			return nil, fmt.Errorf("root hash signature: signer %d has no issuer and serial number", i)
		}
		// encoding/asn1 accepts only minimal INTEGER encodings, so
		// re-encoding gives back the signature's own bytes.
		serial, err := asn1.Marshal(ias.SerialNumber)
		if err != nil {
			return nil, fmt.Errorf("root hash signature: signer %d serial: %w", i, err)
		}
		out = append(out, Signer{SerialDER: serial, IssuerDER: ias.IssuerName.FullBytes})
	}
	return out, nil
}

// VerityWord is the word systemd 262 measures for a verity activation:
// "verity:" NAME ":" ROOTHASH ":" SIGNERS, where NAME is the
// device-mapper name with ':', '\', control characters and bytes of 127
// and above as \xNN, ROOTHASH lowercase hex, and SIGNERS empty when no
// signature is measured (sig nil), else each signer as
// hex(serial DER) "/" base64(issuer DER), joined by ','. A signature that
// does not parse is an error: systemd measures nothing then.
func VerityWord(dmName string, rootHash, sig []byte) (string, error) {
	if dmName == "" || len(rootHash) == 0 {
		return "", errors.New("verity measurement needs a device name and a root hash")
	}
	var signers []string
	if len(sig) != 0 {
		ss, err := Signers(sig)
		if err != nil {
			return "", err
		}
		for _, s := range ss {
			signers = append(signers, hex.EncodeToString(s.SerialDER)+"/"+base64.StdEncoding.EncodeToString(s.IssuerDER))
		}
	}
	return "verity:" + xescape(dmName, ":") + ":" + hex.EncodeToString(rootHash) + ":" + strings.Join(signers, ","), nil
}

// xescape escapes like systemd's xescape(): bytes below ' ', from 127 up,
// '\' and those in bad become \xNN (lowercase hex); the rest is kept.
func xescape(s, bad string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 127 || c == '\\' || strings.IndexByte(bad, c) >= 0 {
			fmt.Fprintf(&b, `\x%02x`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// extendParams are Extend's parameters, in systemd's order.
type extendParams struct {
	NvPCR     string `json:"nvpcr"`
	Text      string `json:"text"`
	EventType string `json:"eventType"`
}

// ExtendVerity calls io.systemd.PCRExtend.Extend on the socket with
// {"nvpcr":"verity","text":word,"eventType":"dm_verity"}, as systemd's
// pcrextend_verity_now() does. The error says why nothing was measured;
// callers log it and go on.
func ExtendVerity(ctx context.Context, socket, word string) error {
	_, err := varlink.Call(ctx, socket, Method, extendParams{NvPCR: VerityNvPCR, Text: word, EventType: VerityEventType})
	return err
}

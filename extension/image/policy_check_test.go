package image

import (
	"errors"
	"strings"
	"testing"
)

func fakeDissected(verity, signed bool, fs string) *Dissected {
	d := &Dissected{Data: Partition{Designator: "root", UUID: "u", FSType: fs, ReadOnly: true}}
	d.Partitions = []Partition{d.Data}
	if verity {
		d.Verity = &Verity{RootHash: make([]byte, 32)}
		d.Partitions = append(d.Partitions, Partition{Designator: "root-verity"})
	}
	if signed {
		d.Verity.Signature = &Signature{PKCS7: []byte{1}}
		d.Partitions = append(d.Partitions, Partition{Designator: "root-verity-sig"})
	}
	return d
}

func TestPolicyCheck(t *testing.T) {
	unprot := fakeDissected(false, false, "squashfs")
	verity := fakeDissected(true, false, "erofs")
	signed := fakeDissected(true, true, "erofs")
	for _, c := range []struct {
		policy string
		d      *Dissected
		sig    SignatureResult
		want   Protection
		rule   string // refusal text when want == ""
	}{
		{DefaultConfextPolicy, signed, SignatureVerified, ProtectionSigned, ""},
		{DefaultConfextPolicy, signed, SignatureAbsent, ProtectionVerity, ""},
		{DefaultConfextPolicy, verity, SignatureAbsent, ProtectionVerity, ""},
		{DefaultConfextPolicy, unprot, SignatureAbsent, ProtectionUnprotected, ""},
		// Beyond systemd: a broken signature is refused under every policy.
		{DefaultConfextPolicy, signed, SignatureInvalid, "", "does not verify"},
		{"*", signed, SignatureInvalid, "", "does not verify"},
		// signed never falls back.
		{"root=signed", verity, SignatureAbsent, "", "requires signed, the image has verity data without a signature"},
		{"root=signed", unprot, SignatureAbsent, "", "requires signed, the image has no verity data"},
		{"root=signed", signed, SignatureAbsent, "", "not verified"},
		{"=signed+absent", signed, SignatureVerified, ProtectionSigned, ""},
		{StrictConfextPolicy, signed, SignatureVerified, ProtectionSigned, ""},
		{"root=verity+signed", unprot, SignatureAbsent, "", "requires verity+signed"},
		{"root=verity", signed, SignatureVerified, ProtectionVerity, ""},
		// Verity data is never used unprotected.
		{"root=unprotected", verity, SignatureAbsent, "", "never mounted without it"},
		{"root=unprotected", unprot, SignatureAbsent, ProtectionUnprotected, ""},
		{"root=absent", unprot, SignatureAbsent, "", "may not be used"},
		{"-", unprot, SignatureAbsent, "", "may not be used"},
		{"root=erofs", unprot, SignatureAbsent, "", "file system squashfs is not allowed (erofs)"},
		{"root=erofs+squashfs", unprot, SignatureAbsent, ProtectionUnprotected, ""},
		{"root=read-only-off", unprot, SignatureAbsent, "", "read-only-off"},
		{"root-verity-sig=absent:root=verity+signed+unprotected", signed, SignatureVerified, "", "must be absent"},
	} {
		p, err := ParsePolicy(c.policy)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Check("img.raw", c.d, c.sig)
		if c.want != "" {
			if err != nil || got != c.want {
				t.Errorf("%q: %v %v, want %s", c.policy, got, err, c.want)
			}
			continue
		}
		var r *PolicyRefusal
		if !errors.As(err, &r) || !strings.Contains(err.Error(), c.rule) || !strings.Contains(err.Error(), "img.raw") ||
			!strings.Contains(err.Error(), c.policy) || r.Partition == "" {
			t.Errorf("%q: %v %v, want a refusal naming image, partition, policy and %q", c.policy, got, err, c.rule)
		}
	}
}

// TestPolicyCheckRepartDDI: the signed DDI under the default, strict
// and verity-only policies.
func TestPolicyCheckRepartDDI(t *testing.T) {
	b := buildDDI(t, ddiSpec{Class: "confext", FS: "erofs", Signed: true})
	d, err := dissectFile(t, b.Path, DissectOptions{Architecture: "x86-64"})
	if err != nil {
		t.Fatal(err)
	}
	if !DefaultPolicy("confext", true).WantsSignature(d) {
		t.Fatal("strict policy does not want the signature")
	}
	if p, err := DefaultPolicy("confext", true).Check("00-default.raw", d, SignatureVerified); err != nil || p != ProtectionSigned {
		t.Fatalf("strict: %v %v", p, err)
	}
	if _, err := DefaultPolicy("confext", true).Check("00-default.raw", d, SignatureInvalid); err == nil {
		t.Fatal("invalid signature accepted")
	}
	if p, err := DefaultPolicy("sysext", false).Check("x.raw", d, SignatureAbsent); err != nil || p != ProtectionVerity {
		t.Fatalf("sysext default: %v %v", p, err)
	}
}

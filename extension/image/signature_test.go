package image

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func trustFrom(t *testing.T, certFiles ...string) []TrustedCert {
	t.Helper()
	dir := t.TempDir()
	for _, c := range certFiles {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(c)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	certs, warns := LoadVerityCerts([]*os.File{d}, []string{"verity.d"})
	if len(warns) != 0 {
		t.Fatal(warns)
	}
	return certs
}

// TestVerifyRepartSignature checks the signature of systemd-repart DDIs
// against the right, a wrong and an expired certificate, and altered
// signatures and root hashes.
func TestVerifyRepartSignature(t *testing.T) {
	right := buildDDI(t, ddiSpec{Class: "confext", FS: "erofs", Signed: true})
	_, wrongCert := testKey(t, "wrong", 1)
	d, err := dissectFile(t, right.Path, DissectOptions{Architecture: "x86-64"})
	if err != nil {
		t.Fatal(err)
	}
	v := d.Verity
	c, err := VerifyRootHashSignature(v.RootHash, v.Signature, trustFrom(t, wrongCert, right.Cert))
	if err != nil || c.Name != filepath.Base(right.Cert) {
		t.Fatalf("right certificate: %v %v", c, err)
	}
	_, err = VerifyRootHashSignature(v.RootHash, v.Signature, trustFrom(t, wrongCert))
	if err == nil || !strings.Contains(err.Error(), "not in verity.d") {
		t.Fatalf("wrong certificate: %v", err)
	}
	if _, err := VerifyRootHashSignature(v.RootHash, v.Signature, nil); err == nil {
		t.Fatal("no certificates accepted")
	}
	// An altered root hash (the signature left as it was).
	h := append([]byte(nil), v.RootHash...)
	h[0] ^= 1
	sig := *v.Signature
	sig.RootHash = nil
	if _, err := VerifyRootHashSignature(h, &sig, trustFrom(t, right.Cert)); err == nil || !strings.Contains(err.Error(), "which is trusted") {
		t.Fatalf("altered root hash: %v", err)
	}
	// One flipped byte in the PKCS#7's signature value (its last bytes).
	bad := *v.Signature
	bad.PKCS7 = append([]byte(nil), v.Signature.PKCS7...)
	bad.PKCS7[len(bad.PKCS7)-5] ^= 0x40
	if _, err := VerifyRootHashSignature(v.RootHash, &bad, trustFrom(t, right.Cert)); err == nil {
		t.Fatal("altered signature accepted")
	}
	// Garbage is refused, never a panic.
	bad.PKCS7 = []byte("not der")
	if _, err := VerifyRootHashSignature(v.RootHash, &bad, trustFrom(t, right.Cert)); err == nil {
		t.Fatal("garbage accepted")
	}

	// Expired certificate: like the kernel's keyring check, validity
	// dates are not enforced against the clock, but repart's signature
	// carries no signing time, or one outside the validity is refused.
	exp := buildDDI(t, ddiSpec{Class: "confext", FS: "erofs", Signed: true, Key: "expired-key"})
	de, err := dissectFile(t, exp.Path, DissectOptions{Architecture: "x86-64"})
	if err != nil {
		t.Fatal(err)
	}
	c, err = VerifyRootHashSignature(de.Verity.RootHash, de.Verity.Signature, trustFrom(t, exp.Cert))
	if err != nil || c == nil {
		t.Fatalf("expired certificate (root hash %s): %v", hex.EncodeToString(de.Verity.RootHash), err)
	}
}

// TestLoadVerityCerts: earlier directories hide later ones by file name,
// an empty file masks, DER and PEM load, junk and symlinks are warned
// about and skipped, other suffixes are ignored.
func TestLoadVerityCerts(t *testing.T) {
	_, a := testKey(t, "load-a", 1)
	_, b := testKey(t, "load-b", 1)
	etc, usr := t.TempDir(), t.TempDir()
	cp := func(src, dst string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cp(a, filepath.Join(etc, "vendor.crt"))
	cp(b, filepath.Join(usr, "vendor.crt")) // hidden by /etc's
	cp(b, filepath.Join(usr, "other.crt"))
	if err := os.WriteFile(filepath.Join(etc, "masked.crt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cp(a, filepath.Join(usr, "masked.crt")) // masked by the empty /etc one
	if err := os.WriteFile(filepath.Join(etc, "junk.crt"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(a, filepath.Join(etc, "link.crt")); err != nil {
		t.Fatal(err)
	}
	cp(a, filepath.Join(etc, "ignored.pem"))
	open := func(p string) *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	certs, warns := LoadVerityCerts([]*os.File{open(etc), nil, open(usr)}, []string{"/etc/verity.d", "/run/verity.d", "/usr/lib/verity.d"})
	var got []string
	for _, c := range certs {
		got = append(got, c.Dir+"/"+c.Name+"="+c.Cert.Subject.CommonName)
	}
	want := "/usr/lib/verity.d/other.crt=dissect test load-b,/etc/verity.d/vendor.crt=dissect test load-a"
	if strings.Join(got, ",") != want {
		t.Errorf("certs %v, want %s", got, want)
	}
	if len(warns) != 2 {
		t.Errorf("warnings %v, want junk.crt and link.crt", warns)
	}
}

// TestLoadTrustedCertsSymlinks: in a trust root, a symlinked *.crt is
// resolved inside the root (an absolute target too) and a link to
// /dev/null masks the name in later directories.
func TestLoadTrustedCertsSymlinks(t *testing.T) {
	_, a := testKey(t, "link-a", 1)
	_, b := testKey(t, "link-b", 1)
	root := t.TempDir()
	mk := func(p string) string {
		d := filepath.Join(root, p)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	share, etc, usr, dev := mk("usr/share/certs"), mk("etc/verity.d"), mk("usr/lib/verity.d"), mk("dev")
	for _, c := range [][2]string{{a, filepath.Join(share, "a.crt")}, {b, filepath.Join(usr, "masked.crt")}} {
		data, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c[1], data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(dev, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	for l, target := range map[string]string{"vendor.crt": "/usr/share/certs/a.crt", "masked.crt": "/dev/null", "escape.crt": "../../../../../../etc/hostname"} {
		if err := os.Symlink(target, filepath.Join(etc, l)); err != nil {
			t.Fatal(err)
		}
	}
	certs, warns := LoadTrustedCerts(root)
	var got []string
	for _, c := range certs {
		got = append(got, c.Dir+"/"+c.Name+"="+c.Cert.Subject.CommonName)
	}
	if strings.Join(got, ",") != "/etc/verity.d/vendor.crt=dissect test link-a" {
		t.Errorf("certs %v", got)
	}
	// escape.crt resolves inside the root, where /etc/hostname is missing.
	if len(warns) != 1 || !strings.Contains(warns[0].Error(), "escape.crt") {
		t.Errorf("warnings %v", warns)
	}
}

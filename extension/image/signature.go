package image

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/smallstep/pkcs7"
	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// VerityDirs are the directories systemd 262 reads trusted root hash
// signing certificates (*.crt) from, in priority order: a file name in an
// earlier directory hides the same name in later ones. The paths are
// relative to the root whose trust counts (see docs/image.md: in the
// initrd that is the initrd's own root, as systemd-confext-sysroot does,
// not the /sysroot being prepared).
var VerityDirs = []string{"/etc/verity.d", "/run/verity.d", "/usr/local/lib/verity.d", "/usr/lib/verity.d"}

const (
	maxCertFile  = 1 << 20
	maxCertFiles = 1024
)

// LoadTrustedCerts loads the certificates of VerityDirs below root (a
// host path, normally paths.TrustRoot), each directory resolved inside
// root by fd. Missing directories count as empty. Unlike
// LoadVerityCerts, a symlinked *.crt is followed as systemd follows it,
// resolved inside root (a link to /dev/null masks the name).
func LoadTrustedCerts(root string) ([]TrustedCert, []error) {
	rf, err := os.Open(root)
	if err != nil {
		return nil, []error{err}
	}
	defer rf.Close()
	var dirs []*os.File
	var warns []error
	for _, p := range VerityDirs {
		d, err := rootfs.OpenIn(rf, p, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				warns = append(warns, err)
			}
			dirs = append(dirs, nil)
			continue
		}
		defer d.Close()
		dirs = append(dirs, d)
	}
	// A symlinked *.crt (systemd follows them) is resolved inside the
	// trust root, never outside it.
	resolve := func(i int, name string) (*os.File, error) {
		return rootfs.OpenRegular(rf, path.Join(VerityDirs[i], name), rootfs.FollowInRoot)
	}
	certs, w := loadCerts(dirs, VerityDirs, resolve)
	return certs, append(warns, w...)
}

// TrustedCert is one certificate from a verity.d directory.
type TrustedCert struct {
	Name string // file name
	Dir  string // directory it came from, for messages
	Cert *x509.Certificate
}

// LoadVerityCerts reads the *.crt files (PEM or DER, one certificate
// each) of the open directories dirs, whose names for messages are
// names[i]. Like systemd's conf-files logic, a file name seen in an
// earlier directory hides later ones, empty files (masks) hide and count
// nothing, and only regular files count; symlinks are not followed (an
// fd-relative reader cannot resolve them safely). Unreadable or invalid
// certificates are reported in the returned warnings and skipped, as
// systemd skips them. A nil *os.File in dirs is skipped (directory
// absent).
func LoadVerityCerts(dirs []*os.File, names []string) ([]TrustedCert, []error) {
	return loadCerts(dirs, names, nil)
}

// loadCerts is LoadVerityCerts; resolve, when set, opens a symlinked
// entry (dir index, name) inside the trust root instead of skipping it.
func loadCerts(dirs []*os.File, names []string, resolve func(int, string) (*os.File, error)) ([]TrustedCert, []error) {
	seen := map[string]bool{}
	var certs []TrustedCert
	var warns []error
	for i, d := range dirs {
		if d == nil {
			continue
		}
		dn := d.Name()
		if i < len(names) {
			dn = names[i]
		}
		fd, err := unix.Openat(int(d.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			warns = append(warns, fmt.Errorf("%s: %w", dn, err))
			continue
		}
		lf := os.NewFile(uintptr(fd), dn)
		ents, err := lf.ReadDir(maxCertFiles + 1)
		lf.Close()
		if err != nil && err != io.EOF {
			warns = append(warns, fmt.Errorf("%s: %w", dn, err))
			continue
		}
		if len(ents) > maxCertFiles {
			warns = append(warns, fmt.Errorf("%s: more than %d entries, ignored", dn, maxCertFiles))
			continue
		}
		sort.Slice(ents, func(a, b int) bool { return ents[a].Name() < ents[b].Name() })
		for _, e := range ents {
			n := e.Name()
			if !strings.HasSuffix(n, ".crt") || seen[n] {
				continue
			}
			seen[n] = true
			c, err := readCertAt(d, n)
			if isType(err, unix.S_IFLNK) && resolve != nil {
				c, err = readCertResolved(resolve, i, n)
			}
			if err != nil {
				warns = append(warns, fmt.Errorf("%s/%s: %w", dn, n, err))
				continue
			}
			if c != nil {
				certs = append(certs, TrustedCert{Name: n, Dir: dn, Cert: c})
			}
		}
	}
	// systemd orders the merged list by file name.
	sort.SliceStable(certs, func(a, b int) bool { return certs[a].Name < certs[b].Name })
	return certs, warns
}

// readCertAt reads one certificate file below d (nil, nil for a mask).
func readCertAt(d *os.File, name string) (*x509.Certificate, error) {
	f, err := rootfs.OpenRegular(d, name, rootfs.NoFollow)
	if err != nil {
		return nil, err
	}
	return readCert(f)
}

// isType reports whether err is the bounded reader's refusal of a file of
// type typ (unix.S_IFLNK, unix.S_IFCHR...).
func isType(err error, typ uint32) bool {
	var fe *rootfs.FileRuleError
	return errors.As(err, &fe) && fe.Type == typ
}

// readCertResolved reads a symlinked entry through resolve; a link to
// /dev/null (a character device) masks the name, as in systemd.
func readCertResolved(resolve func(int, string) (*os.File, error), i int, name string) (*x509.Certificate, error) {
	f, err := resolve(i, name)
	if isType(err, unix.S_IFCHR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return readCert(f)
}

// readCert reads one certificate file (nil, nil for an empty one) and
// closes it.
func readCert(f *os.File) (*x509.Certificate, error) {
	defer f.Close()
	if err := rootfs.CheckRegular(f); err != nil {
		return nil, err
	}
	b, err := rootfs.ReadBounded(f, maxCertFile)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	return ParseCertificate(b)
}

// ParseCertificate parses one PEM ("CERTIFICATE" block) or DER
// certificate.
func ParseCertificate(b []byte) (*x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q is not a CERTIFICATE", blk.Type)
		}
		b = blk.Bytes
	}
	return x509.ParseCertificate(b)
}

// SignatureVerifyError says why a root hash signature was refused.
type SignatureVerifyError struct{ Rule string }

func (e *SignatureVerifyError) Error() string {
	return "root hash signature does not verify: " + e.Rule
}

// VerifyRootHashSignature checks that sig is a PKCS#7 signature, made by
// one of the trusted certificates, of the root hash as lowercase hex
// (what systemd-repart and veritysetup sign and the kernel checks). Only
// the trusted certificates can be the signer: certificates embedded in
// the signature are ignored, so an image cannot bring its own trust. As
// with the kernel's keyring check (which systemd tries first), validity
// dates are not enforced against the clock; a signing-time attribute
// outside the certificate's validity is refused. Returns the certificate
// that signed.
func VerifyRootHashSignature(rootHash []byte, sig *Signature, trusted []TrustedCert) (*TrustedCert, error) {
	if sig == nil || len(sig.PKCS7) == 0 {
		return nil, &SignatureVerifyError{Rule: "no signature"}
	}
	if sig.RootHash != nil && !bytes.Equal(sig.RootHash, rootHash) {
		return nil, &SignatureVerifyError{Rule: fmt.Sprintf("signed root hash %x is not the image's %x", sig.RootHash, rootHash)}
	}
	if len(trusted) == 0 {
		return nil, &SignatureVerifyError{Rule: "no trusted certificates (*.crt in " + strings.Join(VerityDirs, ", ") + ")"}
	}
	p7, err := pkcs7.Parse(sig.PKCS7)
	if err != nil {
		return nil, &SignatureVerifyError{Rule: fmt.Sprintf("not a PKCS#7 signature: %v", err)}
	}
	content := []byte(hex.EncodeToString(rootHash))
	if len(p7.Content) != 0 && !bytes.Equal(p7.Content, content) {
		return nil, &SignatureVerifyError{Rule: "the signature's embedded content is not the root hash"}
	}
	if len(p7.Signers) == 0 {
		return nil, &SignatureVerifyError{Rule: "the signature has no signer"}
	}
	p7.Content = content
	var lastErr error
	for i := range trusted {
		p7.Certificates = []*x509.Certificate{trusted[i].Cert}
		if err := p7.Verify(); err != nil {
			lastErr = err
			continue
		}
		return &trusted[i], nil
	}
	rule := "not signed by any trusted certificate"
	if sig.CertFingerprint != nil {
		rule += fmt.Sprintf(" (the image names certificate sha256 %x", sig.CertFingerprint)
		found := false
		for _, c := range trusted {
			if fp := sha256.Sum256(c.Cert.Raw); bytes.Equal(fp[:], sig.CertFingerprint) {
				found = true
			}
		}
		if found {
			rule += ", which is trusted: the signature or root hash was altered)"
		} else {
			rule += ", which is not in verity.d)"
		}
	}
	if lastErr != nil && !strings.Contains(lastErr.Error(), "No certificate for signer") {
		rule += ": " + lastErr.Error()
	}
	return nil, &SignatureVerifyError{Rule: rule}
}

package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// Signed dm-verity disk images (DDIs) built the way Flatcar builds its
// default confext: `systemd-repart --make-ddi=confext --private-key=
// --certificate=`, with systemd-repart from the Debian forky chroot that
// scripts/prepare-systemd262.sh prepares (it carries systemd-repart,
// openssl and libcryptsetup12).

// SigningKey is a PEM private key and its self-signed certificate on the
// host, cached under $cache/verity-keys/NAME.{key,crt} so that images,
// the /usr image and the initramfs stay cacheable across runs.
type SigningKey struct {
	Name, Key, Cert string
}

// CertPEM returns the certificate's content.
func (k SigningKey) CertPEM(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(k.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var ddiMu sync.Mutex

// systemd262Root is the forky chroot with systemd-repart and openssl.
func systemd262Root(t testing.TB) string {
	t.Helper()
	base := os.Getenv("EXT_SETUP_ROOT_CACHE")
	if base == "" {
		base = "/var/cache/ext-setup-root"
	}
	root := filepath.Join(base, "systemd262-root")
	for _, p := range []string{"usr/bin/systemd-repart", "usr/bin/openssl"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			testutil.Gate(t, "signed DDIs need %s in the forky chroot (run make systemd262-root): %v", p, err)
		}
	}
	return root
}

// inChroot runs argv in the forky chroot with work bound at /run/extsr-ddi
// (and a private /var/tmp), in this process's private mount namespace.
func inChroot(t testing.TB, work string, env []string, argv ...string) string {
	t.Helper()
	root := systemd262Root(t)
	var mounted []string
	defer func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			unix.Unmount(mounted[i], unix.MNT_DETACH)
		}
	}()
	mnt := func(src, dst, fstype string, flags uintptr) {
		if err := unix.Mount(src, dst, fstype, flags, ""); err != nil {
			t.Fatalf("mount %s on %s: %v", src, dst, err)
		}
		mounted = append(mounted, dst)
	}
	for _, d := range []string{"proc", "sys", "dev"} {
		mnt("/"+d, filepath.Join(root, d), "", unix.MS_BIND|unix.MS_REC)
	}
	mnt("tmpfs", filepath.Join(root, "run"), "tmpfs", 0)
	mnt("tmpfs", filepath.Join(root, "var/tmp"), "tmpfs", 0)
	if err := os.MkdirAll(filepath.Join(root, "run/extsr-ddi"), 0o755); err != nil {
		t.Fatal(err)
	}
	mnt(work, filepath.Join(root, "run/extsr-ddi"), "", unix.MS_BIND)
	args := append([]string{"env", "-i", "PATH=/usr/sbin:/usr/bin"}, env...)
	args = append(args, argv...)
	return run(t, "chroot", append([]string{root}, args...)...)
}

// TestKey returns the cached signing key NAME, creating it (RSA 2048,
// self-signed, 100 years) with the chroot's openssl on first use.
func TestKey(t testing.TB, name string) SigningKey {
	t.Helper()
	ddiMu.Lock()
	defer ddiMu.Unlock()
	dir := filepath.Join(filepath.Dir(cacheDir()), "verity-keys")
	k := SigningKey{Name: name, Key: filepath.Join(dir, name+".key"), Cert: filepath.Join(dir, name+".crt")}
	if _, err := os.Stat(k.Cert); err == nil {
		return k
	}
	mkdirs(t, dir)
	work := t.TempDir()
	inChroot(t, work, nil, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "36500",
		"-subj", "/CN=ext-setup-root test "+name, "-keyout", "/run/extsr-ddi/k.pem", "-out", "/run/extsr-ddi/c.crt")
	// Key first, certificate last: the certificate marks a complete pair.
	for _, p := range [][2]string{{"k.pem", k.Key}, {"c.crt", k.Cert}} {
		if err := os.Rename(filepath.Join(work, p[0]), p[1]+".tmp"); err != nil {
			run(t, "cp", filepath.Join(work, p[0]), p[1]+".tmp")
		}
		if err := os.Rename(p[1]+".tmp", p[1]); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// DDIOptions says how to build an extension as a DDI.
type DDIOptions struct {
	Key *SigningKey // nil: verity without signature partition
	// Seed fixes the partition UUIDs that are not derived from the root
	// hash (systemd-repart --seed), so the image is reproducible.
	Seed string
}

// BuildDDI writes the extension as a GPT disk image with an erofs root
// partition, its verity hash partition and (with a key) the signature
// partition, exactly as systemd-repart --make-ddi=confext|sysext makes it
// (or, unsigned, the same definitions without the signature partition).
// File times are fixed so the root hash depends on the content only.
func (e Ext) BuildDDI(t testing.TB, out string, o DDIOptions) {
	t.Helper()
	work := t.TempDir()
	tree := filepath.Join(work, "tree")
	rel := e.Release
	if rel == "" {
		rel = "ID=_any\n"
	}
	class := "sysext"
	if e.Confext {
		class = "confext"
		writeFile(t, tree, "etc/extension-release.d/extension-release."+e.Name, rel, 0o644)
	} else {
		writeFile(t, tree, "usr/lib/extension-release.d/extension-release."+e.Name, rel, 0o644)
	}
	for p, c := range e.Files {
		writeFile(t, tree, p, c, 0o644)
	}
	for p, target := range e.Links {
		symlink(t, tree, p, target)
	}
	run(t, "find", tree, "-exec", "touch", "-h", "-d", "@1700000000", "{}", "+")
	seed := o.Seed
	if seed == "" {
		h := sha256.Sum256([]byte("ext-setup-root test DDI " + e.Name))
		s := hex.EncodeToString(h[:16])
		seed = s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
	}
	args := []string{"systemd-repart", "--seed=" + seed, "--copy-source=/run/extsr-ddi/tree"}
	if o.Key != nil {
		run(t, "cp", o.Key.Key, filepath.Join(work, "key.pem"))
		run(t, "cp", o.Key.Cert, filepath.Join(work, "cert.crt"))
		args = append(args, "--make-ddi="+class, "--private-key=/run/extsr-ddi/key.pem", "--certificate=/run/extsr-ddi/cert.crt")
	} else {
		// The same partitions without the signature: repart's own
		// definitions for the class minus the verity-sig one.
		defs := filepath.Join(work, "defs")
		mkdirs(t, defs)
		src := filepath.Join(systemd262Root(t), "usr/lib/systemd/repart/definitions", class+".repart.d")
		for _, f := range []string{"10-root.conf", "20-root-verity.conf"} {
			run(t, "cp", filepath.Join(src, f), defs)
		}
		args = append(args, "--definitions=/run/extsr-ddi/defs", "--empty=create", "--size=auto", "--dry-run=no")
	}
	args = append(args, "--json=short", "/run/extsr-ddi/out.raw")
	inChroot(t, work, []string{"SOURCE_DATE_EPOCH=1700000000", "SYSTEMD_LOG_LEVEL=warning"}, args...)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Remove(out)
	run(t, "cp", "--sparse=always", filepath.Join(work, "out.raw"), out)
}

// RootHashOf returns the verity root hash of a DDI built by BuildDDI: the
// data partition's UUID (first 128 bits) joined with the hash partition's
// (last 128 bits), as systemd-repart derives them.
func RootHashOf(t testing.TB, img string) string {
	t.Helper()
	out := run(t, "sgdisk", "-i", "1", img)
	out2 := run(t, "sgdisk", "-i", "2", img)
	uuid := func(s string) string {
		for _, l := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(l, "Partition unique GUID: "); ok {
				return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(v), "-", ""))
			}
		}
		t.Fatalf("no partition GUID in sgdisk output of %s:\n%s", img, s)
		return ""
	}
	return uuid(out) + uuid(out2)
}

// FlipByte XORs one byte at off of the file (a tampered image).
func FlipByte(t testing.TB, img string, off int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// FindInImage returns the offset of the first occurrence of needle in img,
// failing t when there is none (tests flip a byte of a file's content,
// which an uncompressed erofs stores verbatim).
func FindInImage(t testing.TB, img, needle string) int64 {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), needle)
	if i < 0 {
		t.Fatalf("%q not found in %s", needle, img)
	}
	return int64(i)
}

// readAt reads n bytes of a file at off.
func readAt(t testing.TB, p string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeAt overwrites bytes of a file at off.
func writeAt(t testing.TB, p string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

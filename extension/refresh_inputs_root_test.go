package extension

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// TestRefreshPolicyNotSkipped (issue 14 item 6): an unsigned squashfs
// confext merged without a policy; a refresh with
// --image-policy=root=signed+absent must refuse it and, with no image
// left in mode "no", remove the merge. Before, the refresh reused the
// verdict of the merge (taken under the default policy) and printed
// "Skipping extension refresh because no change was found".
func TestRefreshPolicyNotSkipped(t *testing.T) {
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireFilesystem(t, "overlay", "squashfs")
	ctx := context.Background()
	r := testRoot(t, "none")
	rawImage(t, r, "squashfs", "sq1")
	o := opts(r, "no")
	if _, err := Merge(ctx, o); err != nil {
		t.Fatal(err)
	}
	defer Unmerge(ctx, o)
	if _, err := os.Stat(filepath.Join(r, "etc/sq1.conf")); err != nil {
		t.Fatalf("not merged: %v", err)
	}
	// A refresh under the same inputs still skips (the control).
	res, err := Refresh(ctx, o)
	must(t, err)
	if !res.Unchanged {
		t.Fatalf("refresh with nothing changed did not skip: %+v", res)
	}
	pol, err := image.ParsePolicy("root=signed+absent")
	must(t, err)
	o.ImagePolicy = pol
	res, err = Refresh(ctx, o)
	must(t, err)
	if res.Unchanged {
		t.Fatalf("refresh under root=signed+absent skipped: the unsigned image stays merged")
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Name != "sq1" {
		t.Errorf("skipped %+v, want sq1 refused", res.Skipped)
	}
	if _, err := os.Stat(filepath.Join(r, "etc/sq1.conf")); err == nil {
		t.Errorf("the refused image's file is still in /etc")
	}
	if n := overlaysAt(t, filepath.Join(r, "etc")); n != 0 {
		t.Errorf("%d overlays on /etc, want the merge removed", n)
	}
}

// TestRefreshNoexecNotSkipped (issue 14 item 6): a merge made with
// --noexec=false is not kept by a refresh that would mount it noexec (the
// confext default): the origin record does not say noexec, the mount does.
func TestRefreshNoexecNotSkipped(t *testing.T) {
	ctx := context.Background()
	r := testRoot(t, "none")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	o := opts(r, "no")
	exec := false
	o.Noexec = &exec
	_, err := Merge(ctx, o)
	must(t, err)
	defer Unmerge(ctx, o)
	if noexecAt(t, filepath.Join(r, "etc")) {
		t.Fatal("merged with --noexec=false but mounted noexec")
	}
	o.Noexec = nil
	res, err := Refresh(ctx, o)
	must(t, err)
	if res.Unchanged {
		t.Fatal("refresh skipped though the merge in place is not mounted noexec, as the default wants")
	}
	if !noexecAt(t, filepath.Join(r, "etc")) {
		t.Error("after the refresh /etc is still not noexec")
	}
	if res, err = Refresh(ctx, o); err != nil || !res.Unchanged {
		t.Errorf("second refresh: %+v, %v, want a skip", res, err)
	}
}

func noexecAt(t *testing.T, p string) bool {
	t.Helper()
	var sfs unix.Statfs_t
	must(t, unix.Statfs(p, &sfs))
	return sfs.Flags&unix.ST_NOEXEC != 0
}

// TestVerdictInputs: every input that can change a verdict changes the
// fingerprint the state file's verdicts are tied to: the image policy,
// the mutable mode, --noexec, the essential patterns, --force and the
// trusted certificates (a certificate added to verity.d).
func TestVerdictInputs(t *testing.T) {
	r := testRoot(t, "none")
	trust := t.TempDir()
	old := paths.TrustRoot
	paths.TrustRoot = trust
	t.Cleanup(func() { paths.TrustRoot = old })
	inputs := func(o Options, mode string) string {
		t.Helper()
		e, err := newEngine(o)
		must(t, err)
		defer e.close()
		s, err := e.verdictInputs(mode)
		must(t, err)
		return s
	}
	base := opts(r, "no")
	ref := inputs(base, "no")
	if again := inputs(base, "no"); again != ref {
		t.Fatalf("not deterministic: %s, %s", ref, again)
	}
	pol, err := image.ParsePolicy("root=signed+absent")
	must(t, err)
	yes := true
	changes := map[string]func(o *Options) string{
		"image policy": func(o *Options) string { o.ImagePolicy = pol; return "no" },
		"mutable mode": func(o *Options) string { return "auto" },
		"noexec":       func(o *Options) string { f := false; o.Noexec = &f; return "no" },
		"essential":    func(o *Options) string { o.Essential = []string{"00-*"}; return "no" },
		"force":        func(o *Options) string { o.Force = yes; return "no" },
	}
	for name, change := range changes {
		o := base
		mode := change(&o)
		if got := inputs(o, mode); got == ref {
			t.Errorf("%s changed, the verdict inputs did not", name)
		}
	}
	certDir := filepath.Join(trust, "etc/verity.d")
	must(t, os.MkdirAll(certDir, 0o755))
	write(t, filepath.Join(certDir, "vendor.crt"), string(testCertPEM(t)))
	if got := inputs(base, "no"); got == ref {
		t.Error("a trusted certificate was added, the verdict inputs did not change")
	}
}

// testCertPEM is a fresh self-signed certificate.
func testCertPEM(t *testing.T) []byte {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "verdict inputs test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

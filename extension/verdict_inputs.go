package extension

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/sysx"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// What a refresh may skip on (issue 14 item 6). systemd 262 skips when
// the origin record it would write equals the one in place; the record
// names the images, the mutable mode and dirs and the mount options, but
// not the image policy, the trusted certificates or --noexec, so a
// refresh with a stricter policy kept an image the policy now refuses
// ("Skipping extension refresh because no change was found"). The origin
// record must stay exactly systemd's (so that the booted
// systemd-<class> refresh skips after our merge), so the other inputs are
// kept elsewhere: those that decide a verdict in our state file
// (record.State.Inputs, compared before verdicts are reused), the one that
// changes the mount in the mount itself (its noexec flag, compared before
// any skip).

// verdictInputs fingerprints everything besides the images and the host
// release that can change a verdict or the merge: the effective image
// policy, the mutable mode, the effective noexec, the essential patterns,
// --force and the trusted verity.d certificates.
func (e *engine) verdictInputs(mode string) (string, error) {
	pol, _, err := e.imagePolicy()
	if err != nil {
		return "", err
	}
	s := sha256.New()
	fmt.Fprintf(s, "policy=%s\x00mode=%s\x00noexec=%t\x00force=%t\x00", pol, mode, e.wantNoexec(), e.opt.Force)
	ess := append([]string(nil), e.opt.Essential...)
	sort.Strings(ess)
	for _, p := range ess {
		fmt.Fprintf(s, "essential=%s\x00", p)
	}
	fmt.Fprintf(s, "certs=%s\x00", e.certsFingerprint())
	return hex.EncodeToString(s.Sum(nil)), nil
}

// trustedCerts loads the verity.d certificates of paths.TrustRoot once
// per call (verifySignature and verdictInputs share them).
func (e *engine) trustedCerts() ([]image.TrustedCert, []error) {
	if !e.certsLoaded {
		e.certs, e.certWarns = image.LoadTrustedCerts(paths.TrustRoot)
		e.certsLoaded = true
	}
	return e.certs, e.certWarns
}

// certsFingerprint hashes the trusted certificates (where each came from
// and its DER bytes) and the problems met loading them: adding, removing
// or replacing a certificate changes it.
func (e *engine) certsFingerprint() string {
	certs, warns := e.trustedCerts()
	s := sha256.New()
	for _, c := range certs {
		sum := sha256.Sum256(c.Cert.Raw)
		fmt.Fprintf(s, "%s/%s=%x\x00", c.Dir, c.Name, sum)
	}
	for _, w := range warns {
		fmt.Fprintf(s, "warning=%v\x00", w)
	}
	return hex.EncodeToString(s.Sum(nil))
}

// mountAttrsFrom are the mount attributes of a new overlay: the class's,
// with --noexec applied and drop (MOUNT_ATTR_RDONLY for a mutable merge)
// cleared, then those the overlay mount options opts set or clear. It
// also returns the options that are overlay parameters.
func (e *engine) mountAttrsFrom(opts string, drop uint64) (params []string, attrs uint64) {
	attrs = e.cls.MountAttrs
	if e.opt.Noexec != nil {
		if *e.opt.Noexec {
			attrs |= unix.MOUNT_ATTR_NOEXEC
		} else {
			attrs &^= unix.MOUNT_ATTR_NOEXEC
		}
	}
	attrs &^= drop
	params, set, clr := overlayOptions(opts)
	return params, (attrs &^ clr) | set
}

// wantNoexec reports whether a merge made now is mounted noexec
// (mutableDefaultOptions sets no exec option, so mutability does not
// matter).
func (e *engine) wantNoexec() bool {
	_, attrs := e.mountAttrsFrom(e.getenv(e.cls.OverlayOptionsEnv), 0)
	return attrs&unix.MOUNT_ATTR_NOEXEC != 0
}

// attrsUnchanged reports whether every merge in place is mounted with the
// noexec this call would give it; a merge whose flags cannot be read
// counts as changed (the refresh then replaces it).
func (e *engine) attrsUnchanged(states []*hierState) bool {
	want := e.wantNoexec()
	for _, s := range states {
		if !s.ours || s.top == nil {
			continue
		}
		var sfs unix.Statfs_t
		if err := sysx.Retry(func() error { return unix.Fstatfs(int(s.top.Fd()), &sfs) }); err != nil {
			e.log.Warnf("cannot read the mount flags of %s (refreshing): %v", s.display, err)
			return false
		}
		if got := sfs.Flags&unix.ST_NOEXEC != 0; got != want {
			e.log.Noticef("the merge at %s is mounted with noexec=%t, this call wants noexec=%t; refreshing", s.display, got, want)
			return false
		}
	}
	return true
}

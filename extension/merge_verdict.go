package extension

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// candidate is a discovered image with its identity and verdict.
type candidate struct {
	img      discover.Image
	id       record.OriginExtension
	opened   *openedImage
	accepted bool
	reason   string
	fp       string // DirFingerprint of an accepted directory image, once walked
	edited   bool   // in-place edit already reported (unchanged runs twice)
	// transient: rejected for an error of the system (EBUSY, EIO, ...), not
	// a verdict on the image; never remembered, so the next run retries.
	transient bool
}

// transientlyLost lists the images of the merge in place (by its origin
// record) that were rejected now for a transient error, with the error.
func transientlyLost(old []byte, cands []*candidate) []string {
	d, err := record.ParseOrigin(bytes.NewReader(old))
	if err != nil {
		return nil
	}
	o, err := d.Origin()
	if err != nil {
		return nil
	}
	in := map[string]bool{}
	for _, x := range o.Extensions {
		in[x.Name] = true
	}
	var lost []string
	for _, c := range cands {
		if c.transient && in[c.img.Name] {
			lost = append(lost, c.img.Name+" ("+c.reason+")")
		}
	}
	return lost
}

// transientErr reports errors that say nothing about an image's content:
// a later run may succeed (found by the fault-injection test: an EBUSY of
// one mount was remembered as the image's verdict, and every later refresh
// of that boot skipped a good image).
func transientErr(err error) bool {
	for _, e := range []error{unix.EBUSY, unix.EIO, unix.EINTR, unix.EAGAIN, unix.ENOMEM, unix.ENOSPC, unix.ENFILE, unix.EMFILE, unix.EROFS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// check opens and validates one image (unless its verdict is known) and
// records the verdict. It returns an error only for an essential image
// that cannot be used, or a cancelled context.
func (e *engine) check(c *candidate, host release.Host, scope string) error {
	o, err := e.openImage(c.img)
	if err != nil {
		c.reason, c.transient = err.Error(), transientErr(err)
		if e.essential(c.img.Name) {
			return fmt.Errorf("essential %w", err)
		}
		return nil
	}
	c.opened = o
	ok, reason, err := e.validate(o, host, scope)
	if err != nil {
		reason, c.transient = err.Error(), transientErr(err)
	}
	if !ok {
		c.reason = reason
		if e.essential(c.img.Name) {
			return &imageError{c.img.Name, e.display(c.img.Path), "essential image rejected: " + reason, nil}
		}
		return nil
	}
	c.accepted = true
	if c.img.Type == discover.ImageDirectory && c.fp == "" {
		// The fast path may have walked it already; once per run is enough.
		c.fp = e.fingerprint(c.img, o.tree)
	}
	return nil
}

// validate checks an opened image's extension-release against the host.
func (e *engine) validate(o *openedImage, host release.Host, scope string) (bool, string, error) {
	if e.opt.Force {
		return true, "", nil
	}
	cls := *e.cls
	if o.usrOnly {
		if !strings.HasPrefix(cls.ReleaseDir, "/usr/") {
			return false, "a usr partition cannot carry " + cls.ReleaseDir, nil
		}
		cls.ReleaseDir = strings.TrimPrefix(cls.ReleaseDir, "/usr")
	}
	rf, err := discover.ReadReleaseFile(o.tree, &cls, o.img.Name, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Sprintf("no release file %s/extension-release.%s in the image", e.cls.ReleaseDir, o.img.Name), nil
	}
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", rf.Path, err)
	}
	p, fields := rf.Path, rf.Fields
	for _, is := range rf.Issues {
		e.log.Noticef("%s image %s: %s (ignored, as systemd does)", e.cls.Name, o.img.Name, is)
	}
	ok, reason, err := release.Validate(fields, host, release.Options{
		ScopeKey: e.cls.ScopeKey, LevelKey: e.cls.LevelKey, Scope: scope, Arch: release.UnameArchitecture(),
	})
	if err != nil {
		return false, "", err
	}
	if !ok {
		return false, p + ": " + reason, nil
	}
	if !o.usrOnly {
		if bad, err := discover.HasForbiddenContent(o.tree, e.cls); err != nil {
			return false, "", err
		} else if bad {
			return false, "image contains /usr/lib/os-release, which would replace the host's", nil
		}
	}
	return true, "", nil
}

// essential reports whether name matches one of the Essential patterns.
func (e *engine) essential(name string) bool {
	for _, p := range e.opt.Essential {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// skip logs and records an image left out, naming the file and the rule.
func (e *engine) skip(res *Result, img discover.Image, reason string) {
	e.log.Warnf("skipping %s image %s (%s): %s", e.cls.Name, img.Name, e.display(img.Path), reason)
	res.Skipped = append(res.Skipped, Skip{Name: img.Name, Reason: reason})
}

// knownVerdicts fills in the verdicts from the last run when every image
// has the identity it had then and nothing else that decides a verdict
// changed (the host release, --force, the verdict inputs: image policy,
// trusted certificates, ...); false means some image must be opened.
func (e *engine) knownVerdicts(cands []*candidate, st *record.State, hh, inputs string) bool {
	if st == nil || st.HostRelease != hh || st.Force != e.opt.Force || st.Inputs != inputs {
		return false
	}
	for _, c := range cands {
		rec, ok := st.Images[c.img.Name]
		if !ok || rec.Identity != c.id || rec.Type != c.img.Type.String() {
			return false
		}
	}
	for _, c := range cands {
		rec := st.Images[c.img.Name]
		c.accepted, c.reason = rec.Accepted, rec.Reason
	}
	return true
}

// unchanged compares the origin the images would produce with the one in
// place and checks directory images for in-place edits.
func (e *engine) unchanged(old []byte, oldFrom string, doc *record.Origin, cands []*candidate, st *record.State) bool {
	d := *doc
	d.Extensions = originExtensions(cands)
	od, err := record.ParseOrigin(bytes.NewReader(old))
	if err != nil {
		e.log.Warnf("cannot parse %s of the merge in place (refreshing): %v", oldFrom, err)
		return false
	}
	if !record.Equal(od, d.Document()) {
		return false
	}
	if st == nil {
		return true
	}
	for _, c := range cands {
		if !c.accepted || c.img.Type != discover.ImageDirectory {
			continue
		}
		rec, ok := st.Images[c.img.Name]
		if !ok || rec.Fingerprint == "" {
			continue
		}
		if rec.Fingerprint == fingerprintUnknown {
			e.log.Noticef("directory image %s could not be fingerprinted last time; refreshing", c.img.Name)
			return false
		}
		if c.fp == "" {
			c.fp = e.fingerprint(c.img, nil)
		}
		if c.fp == fingerprintUnknown {
			return false // logged by fingerprint: cannot show it is unchanged
		}
		if c.fp != rec.Fingerprint {
			if !c.edited {
				e.log.Noticef("directory image %s changed in place; refreshing", c.img.Name)
				c.edited = true
			}
			return false
		}
	}
	return true
}

// newState records the verdicts of this run.
func (e *engine) newState(cands []*candidate, hh, inputs string) *record.State {
	st := &record.State{Root: e.rootPath, HostRelease: hh, Force: e.opt.Force, Inputs: inputs, Images: map[string]record.ImageState{}}
	for _, c := range cands {
		if !c.accepted && (c.reason == "" || c.transient) {
			continue
		}
		fp := c.fp
		if c.accepted && c.img.Type == discover.ImageDirectory && fp == "" {
			fp = e.fingerprint(c.img, nil)
		}
		st.Images[c.img.Name] = record.ImageState{Identity: c.id, Type: c.img.Type.String(), Accepted: c.accepted, Reason: c.reason, Fingerprint: fp}
	}
	return st
}

// fingerprintUnknown is recorded (and compared) when a directory image
// could not be fingerprinted. Without a fingerprint an in-place edit of
// the image cannot be detected, so the conservative reading is "changed":
// the next refresh replaces the merge instead of skipping.
const fingerprintUnknown = "unknown"

// fingerprint returns the DirFingerprint of the directory image img, from
// tree when it is already open (else opened here), or fingerprintUnknown
// with a warning when that fails.
func (e *engine) fingerprint(img discover.Image, tree *os.File) string {
	fp, err := func() (string, error) {
		if tree != nil {
			return fingerprintOpened(tree)
		}
		dir, err := openDirIn(e.root, img.Path)
		if err != nil {
			return "", err
		}
		defer dir.Close()
		return fingerprintOpened(dir)
	}()
	if err != nil {
		e.log.Warnf("cannot fingerprint directory image %s (in-place edits of it cannot be detected, so a refresh will not skip): %v", e.display(img.Path), err)
		return fingerprintUnknown
	}
	return fp
}

// fingerprintOpened is DirFingerprint for a directory image opened by
// O_PATH fd.
func fingerprintOpened(dir *os.File) (string, error) {
	d, err := reopen(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return "", err
	}
	defer d.Close()
	return record.FingerprintTree(d)
}

// hostRelease reads the root's os-release (SYSTEMD_OS_RELEASE overrides
// it, as in systemd) and names the scope images are validated for; with
// --force an unreadable os-release is no error.
func (e *engine) hostRelease() (release.Host, string, error) {
	host, err := release.LoadHost(func(p string) (*os.File, error) {
		return rootfs.OpenIn(e.root, p, unix.O_RDONLY)
	}, e.getenv("SYSTEMD_OS_RELEASE"))
	if err != nil && !e.opt.Force {
		return host, "", fmt.Errorf("host os-release of %s: %w", e.rootPath, err)
	}
	scope := "system"
	if e.initrd {
		scope = "initrd"
	}
	return host, scope, nil
}

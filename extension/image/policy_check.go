package image

import (
	"fmt"
	"strings"
)

// SignatureResult is what became of an image's root hash signature.
type SignatureResult int

const (
	// SignatureAbsent: the image carries no signature (or it was not
	// checked because the policy does not allow "signed").
	SignatureAbsent SignatureResult = iota
	// SignatureVerified: the signature verified against a trusted
	// certificate (kernel keyring or verity.d).
	SignatureVerified
	// SignatureInvalid: the image carries a signature that does not
	// verify.
	SignatureInvalid
)

// PolicyRefusal is an image the policy does not allow; it names the
// image, the partition, the policy and the rule that failed.
type PolicyRefusal struct {
	Image, Partition, Policy, Rule string
}

func (e *PolicyRefusal) Error() string {
	return fmt.Sprintf("image %s refused: partition %s: image policy %q: %s", e.Image, e.Partition, e.Policy, e.Rule)
}

// fsFlag maps a file system type to its policy flag.
var fsFlag = map[string]PolicyFlags{"btrfs": FlagBtrfs, "erofs": FlagErofs, "ext4": FlagExt4, "f2fs": FlagF2fs,
	"squashfs": FlagSquashfs, "vfat": FlagVfat, "xfs": FlagXfs}

// WantsSignature reports whether the policy would use a signature on
// the data partition d (so the caller should verify it).
func (p *Policy) WantsSignature(d *Dissected) bool {
	return d != nil && d.Verity != nil && d.Verity.Signature != nil && p.Flags(d.Data.Designator)&FlagSigned != 0
}

// Check decides how the dissected image name is protected under p:
// signed when it carries a verified signature and the policy allows
// "signed", else verity when it carries verity data and the policy
// allows "verity", else unprotected when it carries no verity data and
// the policy allows "unprotected". Otherwise it returns a *PolicyRefusal.
// A policy that allows only "signed" never falls back. Beyond systemd:
// a signature that is present but does not verify is refused under every
// policy, and an image with verity data is never used unprotected. Every
// other partition of a DDI must be allowed to exist by its flags.
func (p *Policy) Check(name string, d *Dissected, sig SignatureResult) (Protection, error) {
	refuse := func(part, rule string, a ...any) (Protection, error) {
		return "", &PolicyRefusal{Image: name, Partition: part, Policy: p.Text, Rule: fmt.Sprintf(rule, a...)}
	}
	base := d.Data.Designator
	f := p.Flags(base)
	if sig == SignatureInvalid {
		return refuse(base+"-verity-sig", "the root hash signature does not verify (refused under every policy)")
	}
	for _, part := range d.Partitions {
		if part.Designator == "" || part.Designator == base {
			continue
		}
		if _, listed := p.Rules[part.Designator]; !listed &&
			(part.Designator == base+"-verity" || part.Designator == base+"-verity-sig") {
			// The data partition's own hash and signature partitions
			// follow its flags unless the policy names them.
			continue
		}
		pf := p.Flags(part.Designator)
		if pf&FlagsUse == FlagAbsent {
			return refuse(part.Designator, "the partition must be absent (%s)", FlagsString(pf))
		}
		if pf&FlagsUse == 0 {
			return refuse(part.Designator, "the policy allows no use of this partition")
		}
	}
	if f&(FlagsUse&^(FlagUnused|FlagAbsent)) == 0 {
		return refuse(base, "the data partition may not be used (%s)", FlagsString(f))
	}
	if fs := f & flagsFS; fs != 0 && fs&fsFlag[d.Data.FSType] == 0 {
		return refuse(base, "file system %s is not allowed (%s)", d.Data.FSType, fsNames(fs))
	}
	if d.Data.UUID != "" { // GPT attributes exist only for partitions
		switch f & flagsReadOnly {
		case FlagReadOnlyOn:
			if !d.Data.ReadOnly {
				return refuse(base, "read-only-on, but the partition's read-only flag is off")
			}
		case FlagReadOnlyOff:
			if d.Data.ReadOnly {
				return refuse(base, "read-only-off, but the partition's read-only flag is on")
			}
		}
		switch f & flagsGrowFS {
		case FlagGrowFSOn:
			if !d.Data.GrowFS {
				return refuse(base, "growfs-on, but the partition's growfs flag is off")
			}
		case FlagGrowFSOff:
			if d.Data.GrowFS {
				return refuse(base, "growfs-off, but the partition's growfs flag is on")
			}
		}
	}
	hasVerity := d.Verity != nil
	hasSig := hasVerity && d.Verity.Signature != nil
	switch {
	case hasSig && sig == SignatureVerified && f&FlagSigned != 0:
		return ProtectionSigned, nil
	case hasVerity && f&FlagVerity != 0:
		return ProtectionVerity, nil
	case !hasVerity && f&FlagUnprotected != 0:
		return ProtectionUnprotected, nil
	}
	offers := "no verity data"
	switch {
	case hasSig && sig == SignatureVerified:
		offers = "a verified signature"
	case hasSig:
		offers = "verity data with a signature that was not verified"
	case hasVerity:
		offers = "verity data without a signature"
	}
	if hasVerity && f&FlagUnprotected != 0 {
		return refuse(base, "the image carries verity data and the policy allows it only unprotected (%s); an image with verity data is never mounted without it", FlagsString(f))
	}
	return refuse(base, "the policy requires %s, the image has %s", FlagsString(f&(FlagsUse&^(FlagUnused|FlagAbsent))), offers)
}

func fsNames(f PolicyFlags) string {
	_, _, fs := flagsDetail(f)
	return strings.ReplaceAll(fs, "+", ", ")
}

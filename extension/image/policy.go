package image

import (
	"fmt"
	"strings"
)

// PolicyFlags is a set of image policy flags for one partition, as in
// systemd's PartitionPolicyFlags (systemd.image-policy(7)).
type PolicyFlags uint32

const (
	FlagVerity PolicyFlags = 1 << iota
	FlagSigned
	FlagEncrypted
	FlagEncryptedWithIntegrity
	FlagUnprotected
	FlagUnused
	FlagAbsent
	FlagReadOnlyOff
	FlagReadOnlyOn
	FlagGrowFSOff
	FlagGrowFSOn
	FlagBtrfs
	FlagErofs
	FlagExt4
	FlagF2fs
	FlagSquashfs
	FlagVfat
	FlagXfs

	// FlagsUse are the flags that say whether and how a partition is
	// used; "open" is all of them.
	FlagsUse = FlagVerity | FlagSigned | FlagEncrypted | FlagEncryptedWithIntegrity | FlagUnprotected | FlagUnused | FlagAbsent
	// FlagsIgnore is "ignore": unused+absent.
	FlagsIgnore    = FlagUnused | FlagAbsent
	flagsReadOnly  = FlagReadOnlyOff | FlagReadOnlyOn
	flagsGrowFS    = FlagGrowFSOff | FlagGrowFSOn
	flagsFS        = FlagBtrfs | FlagErofs | FlagExt4 | FlagF2fs | FlagSquashfs | FlagVfat | FlagXfs
	flagsVerityFor = FlagUnprotected | FlagUnused | FlagAbsent
)

// flagNames in systemd's order (the order of its canonical strings).
var flagNames = []struct {
	name string
	f    PolicyFlags
}{
	{"verity", FlagVerity}, {"signed", FlagSigned}, {"encrypted", FlagEncrypted},
	{"encryptedwithintegrity", FlagEncryptedWithIntegrity}, {"unprotected", FlagUnprotected},
	{"unused", FlagUnused}, {"absent", FlagAbsent},
	{"read-only-off", FlagReadOnlyOff}, {"read-only-on", FlagReadOnlyOn},
	{"growfs-off", FlagGrowFSOff}, {"growfs-on", FlagGrowFSOn},
	{"btrfs", FlagBtrfs}, {"erofs", FlagErofs}, {"ext4", FlagExt4}, {"f2fs", FlagF2fs},
	{"squashfs", FlagSquashfs}, {"vfat", FlagVfat}, {"xfs", FlagXfs},
}

// PolicyDesignators are the partition identifiers a policy may name, in
// systemd's order.
var PolicyDesignators = []string{"root", "usr", "home", "srv", "esp", "xbootldr", "swap",
	"root-verity", "usr-verity", "root-verity-sig", "usr-verity-sig", "tmp", "var"}

func knownDesignator(d string) bool {
	for _, k := range PolicyDesignators {
		if k == d {
			return true
		}
	}
	return false
}

// Policy is a parsed image policy.
type Policy struct {
	// Rules holds the explicitly listed partitions.
	Rules map[string]PolicyFlags
	// Default applies to partitions not listed (unused+absent unless the
	// policy sets it with an empty identifier).
	Default PolicyFlags
	// Text is the policy as given, for messages.
	Text string
}

// PolicyError is a policy string systemd would refuse to parse.
type PolicyError struct {
	Text, Rule string
}

func (e *PolicyError) Error() string { return fmt.Sprintf("image policy %q: %s", e.Text, e.Rule) }

// ParsePolicy parses an image policy string exactly as systemd 262's
// --image-policy= does: rules "IDENTIFIER=FLAG+FLAG..." separated by
// ":", an empty identifier setting the default for unlisted partitions,
// the special policies "*" (use everything), "-" (use nothing, also the
// empty string) and "~" (everything absent), the shortcuts "open" and
// "ignore", and a rule without protection flags meaning "open".
// Identifiers may not repeat; unknown identifiers or flags are errors.
func ParsePolicy(s string) (*Policy, error) {
	p := &Policy{Rules: map[string]PolicyFlags{}, Default: FlagsIgnore, Text: s}
	t := strings.TrimSpace(s)
	switch t {
	case "*":
		p.Default = FlagsUse
		return p, nil
	case "-", "":
		return p, nil
	case "~":
		p.Default = FlagAbsent
		return p, nil
	}
	if len(t) > 4096 {
		return nil, &PolicyError{s, "longer than 4096 bytes"}
	}
	seenDefault := false
	for _, rule := range strings.Split(t, ":") {
		name, flags, ok := strings.Cut(rule, "=")
		if !ok {
			return nil, &PolicyError{s, fmt.Sprintf("rule %q has no \"=\"", rule)}
		}
		name = strings.TrimSpace(name)
		f, err := parseFlags(flags)
		if err != nil {
			return nil, &PolicyError{s, fmt.Sprintf("rule %q: %v", rule, err)}
		}
		if name == "" {
			if seenDefault {
				return nil, &PolicyError{s, "the default (empty identifier) is set twice"}
			}
			seenDefault = true
			p.Default = f
			continue
		}
		if !knownDesignator(name) {
			return nil, &PolicyError{s, fmt.Sprintf("unknown partition identifier %q", name)}
		}
		if _, dup := p.Rules[name]; dup {
			return nil, &PolicyError{s, fmt.Sprintf("partition %q is listed twice", name)}
		}
		p.Rules[name] = f
	}
	return p, nil
}

// parseFlags parses "FLAG+FLAG..." ("" and "-" are no flags); a set
// without protection flags becomes "open", as systemd fills it in.
func parseFlags(s string) (PolicyFlags, error) {
	var f PolicyFlags
	s = strings.TrimSpace(s)
	if s != "" && s != "-" {
		for _, w := range strings.Split(s, "+") {
			switch w {
			case "open":
				f |= FlagsUse
				continue
			case "ignore":
				f |= FlagsIgnore
				continue
			}
			found := false
			for _, n := range flagNames {
				if n.name == w {
					f |= n.f
					found = true
				}
			}
			if !found {
				return 0, fmt.Errorf("unknown flag %q", w)
			}
		}
	}
	if f&FlagsUse == 0 {
		f |= FlagsUse
	}
	return f, nil
}

// validFor masks flags to what a partition can have: verity and
// signature partitions are themselves only unprotected, unused or
// absent; partitions without a verity partition type cannot be verity.
func validFor(d string, f PolicyFlags) PolicyFlags {
	switch {
	case strings.HasSuffix(d, "-verity") || strings.HasSuffix(d, "-verity-sig"):
		return f &^ (FlagsUse &^ flagsVerityFor)
	case d == "root" || d == "usr":
		return f
	}
	return f &^ (FlagVerity | FlagSigned)
}

// Flags returns the effective flags of partition d: its rule, else for a
// -verity (-verity-sig) partition whose data partition is listed with
// verity or signed (signed) the flags derived from it (the hash and
// signature partitions must then exist, optional only as far as the data
// partition is), else the default masked to what d can be.
func (p *Policy) Flags(d string) PolicyFlags {
	if f, ok := p.Rules[d]; ok {
		return f
	}
	base, kind := d, ""
	if b, ok := strings.CutSuffix(d, "-verity-sig"); ok {
		base, kind = b, "sig"
	} else if b, ok := strings.CutSuffix(d, "-verity"); ok {
		base, kind = b, "verity"
	}
	if kind != "" {
		if f, ok := p.Rules[base]; ok {
			need := FlagVerity | FlagSigned
			if kind == "sig" {
				need = FlagSigned
			}
			if f&need != 0 {
				out := FlagUnprotected | f&(flagsReadOnly|flagsGrowFS)
				return out | f&(FlagUnused|FlagAbsent)
			}
		}
	}
	return validFor(d, p.Default)
}

// FlagsString renders the use flags as systemd-analyze does ("open",
// "ignore", "-" or a "+" list).
func FlagsString(f PolicyFlags) string {
	u := f & FlagsUse
	switch u {
	case FlagsUse:
		return "open"
	case FlagsIgnore:
		return "ignore"
	case 0:
		return "-"
	}
	var out []string
	for _, n := range flagNames {
		if u&n.f != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, "+")
}

// flagsDetail renders read-only, growfs and file system columns as
// systemd-analyze does.
func flagsDetail(f PolicyFlags) (ro, growfs, fs string) {
	tri := func(off, on PolicyFlags) string {
		switch f & (off | on) {
		case on:
			return "yes"
		case off:
			return "no"
		}
		return "-"
	}
	var fss []string
	for _, n := range flagNames {
		if n.f&flagsFS != 0 && f&n.f != 0 {
			fss = append(fss, n.name)
		}
	}
	fs = "-"
	if len(fss) > 0 {
		fs = strings.Join(fss, "+")
	}
	return tri(FlagReadOnlyOff, FlagReadOnlyOn), tri(FlagGrowFSOff, FlagGrowFSOn), fs
}

// String renders the policy in the input order-independent long form
// (listed partitions in systemd's order, then the default).
func (p *Policy) String() string {
	var parts []string
	full := func(f PolicyFlags) string {
		s := []string{}
		if f&FlagsUse != FlagsUse {
			s = append(s, FlagsString(f))
		}
		for _, n := range flagNames {
			if n.f&(flagsReadOnly|flagsGrowFS|flagsFS) != 0 && f&n.f != 0 {
				s = append(s, n.name)
			}
		}
		if len(s) == 0 {
			return "open"
		}
		return strings.Join(s, "+")
	}
	for _, d := range PolicyDesignators {
		if f, ok := p.Rules[d]; ok {
			parts = append(parts, d+"="+full(f))
		}
	}
	parts = append(parts, "="+full(p.Default))
	return strings.Join(parts, ":")
}

// Class default policies of systemd 262 (sysext.c): every protection or
// absent for the partitions the class uses, everything else ignored; the
// strict variants (initrd, no --root, images under /.extra/) require a
// signature.
const (
	DefaultSysextPolicy        = "root=verity+signed+encrypted+unprotected+absent:usr=verity+signed+encrypted+unprotected+absent"
	DefaultConfextPolicy       = "root=verity+signed+encrypted+unprotected+absent"
	StrictSysextPolicy         = "root=signed+absent:usr=signed+absent"
	StrictConfextPolicy        = "root=signed+absent"
	defaultPolicyForUnknownCls = "-"
)

// DefaultPolicy returns systemd 262's default policy of class ("sysext"
// or "confext"), or its strict variant.
func DefaultPolicy(class string, strict bool) *Policy {
	s := defaultPolicyForUnknownCls
	switch {
	case class == "sysext" && strict:
		s = StrictSysextPolicy
	case class == "sysext":
		s = DefaultSysextPolicy
	case class == "confext" && strict:
		s = StrictConfextPolicy
	case class == "confext":
		s = DefaultConfextPolicy
	}
	p, err := ParsePolicy(s)
	if err != nil {
		panic(err)
	}
	return p
}

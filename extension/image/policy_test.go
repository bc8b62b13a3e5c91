package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// policyCases are systemd.image-policy(7)'s examples, the class defaults
// and edge cases of the syntax.
var policyCases = []string{
	"usr=verity+read-only-on:root=encrypted:swap=encrypted",
	"root=encrypted+read-only-off:srv=encrypted+absent:swap=absent",
	"root=unprotected+encrypted:swap=absent+unused:=unprotected+encrypted+absent",
	"root=erofs+squashfs:swap=absent+unused:=unprotected+encrypted+absent",
	"*", "-", "~", "", "=", "=verity+signed", "=signed+absent",
	DefaultSysextPolicy, DefaultConfextPolicy, StrictSysextPolicy, StrictConfextPolicy,
	"root=verity", "root=signed", "root=verity+signed", "root=signed+absent", "root=verity+signed+unused",
	"root=unprotected", "root=encrypted", "root=absent", "root=unused", "root=open", "root=ignore", "root=",
	"root=read-only-on", "usr=verity+read-only-on+growfs-off:root=ext4", "root=verity:=", "root=verity+unprotected",
	"root-verity=absent", "root-verity-sig=absent:root=verity+signed+absent", "root=encryptedwithintegrity",
	" root=verity", "root=verity:usr=signed:=absent",
	// Refused by systemd.
	"root=signed:root=verity", "foo=verity", "ROOT=verity", "root=Verity", "root=verity++signed",
	"root=verity+:", ":root=verity", "root=verity:", "root=*", "root", "=verity:=signed",
}

func TestParsePolicyBasics(t *testing.T) {
	p, err := ParsePolicy("root=verity+signed:usr=squashfs+read-only-on:=absent")
	if err != nil {
		t.Fatal(err)
	}
	if p.Flags("root") != FlagVerity|FlagSigned || p.Flags("usr") != FlagsUse|FlagSquashfs|FlagReadOnlyOn ||
		p.Flags("home") != FlagAbsent || p.Flags("root-verity") != FlagUnprotected || p.Flags("root-verity-sig") != FlagUnprotected {
		t.Fatalf("flags: %s", p)
	}
	for _, bad := range []string{"root=signed:root=verity", "foo=verity", "root=bogus", "root", "=a:=b"} {
		if _, err := ParsePolicy(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestPolicyAgainstSystemdAnalyze compares every case's per-partition
// flags with `systemd-analyze image-policy` of systemd 262 (in the forky
// chroot): same acceptance, same mode, read-only, growfs and fstype for
// every partition.
func TestPolicyAgainstSystemdAnalyze(t *testing.T) {
	testutil.RequireRoot(t) // chroot
	root := filepath.Join(cacheBase(), "systemd262-root")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/systemd-analyze")); err != nil {
		testutil.Gate(t, "systemd-analyze 262 in the forky chroot: %v", err)
	}
	for _, c := range policyCases {
		out, err := exec.Command("chroot", root, "systemd-analyze", "image-policy", c).CombinedOutput()
		p, perr := ParsePolicy(c)
		if err != nil {
			if perr == nil {
				t.Errorf("%q: systemd refuses (%s), we accept %s", c, strings.TrimSpace(string(out)), p)
			}
			continue
		}
		if perr != nil {
			t.Errorf("%q: systemd accepts, we refuse: %v", c, perr)
			continue
		}
		rows := 0
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) != 5 || !knownDesignator(f[0]) {
				continue
			}
			rows++
			fl := p.Flags(f[0])
			ro, gr, fs := flagsDetail(fl)
			got := strings.Join([]string{f[0], FlagsString(fl), ro, gr, fs}, " ")
			if want := strings.Join(f, " "); got != want {
				t.Errorf("%q: systemd %q, we %q", c, want, got)
			}
		}
		if rows != len(PolicyDesignators) {
			t.Errorf("%q: %d partition rows in systemd-analyze's output:\n%s", c, rows, out)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, c := range policyCases {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		// The long form parses to the same flags.
		q, err := ParsePolicy(p.String())
		if err != nil {
			t.Fatalf("%q: long form %q does not parse: %v", s, p.String(), err)
		}
		for _, d := range PolicyDesignators {
			if p.Flags(d) != q.Flags(d) {
				t.Fatalf("%q: %s differs after the long form %q", s, d, p.String())
			}
		}
	})
}

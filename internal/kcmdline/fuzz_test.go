package kcmdline

import (
	"strings"
	"testing"
)

// FuzzParse: the kernel command line parser never panics, Parse and
// ParseString agree, keys are never empty and hold no white space outside
// quotes, and every parameter is found again by Lookup.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"BOOT_IMAGE=/vmlinuz root=LABEL=ROOT quiet\n",
		"ext-setup-root.debug ext-setup-root.dry-run ext-setup-root.essential=00-*default*,user-*",
		"systemd.confext=0 rd.systemd.sysext=no ext_setup_root.dry_run=1",
		"mount.usr=PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c verity.usr=PARTUUID=x usr=/dev/vda3",
		"a=\"quoted value\" \"b=c d\" e=\"unterminated",
		"ext-setup-root.late-refresh=ours -- init args=1",
		"\t\n  =x ==y a== \x00 \xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(strings.NewReader(s))
		if err != nil {
			return // larger than MaxSize
		}
		c2 := ParseString(s)
		if len(c.Params) != len(c2.Params) {
			t.Fatalf("Parse %d params, ParseString %d", len(c.Params), len(c2.Params))
		}
		for i, p := range c.Params {
			if p != c2.Params[i] {
				t.Fatalf("param %d: %+v vs %+v", i, p, c2.Params[i])
			}
			if p.Key == "" && !p.HasValue {
				t.Fatalf("empty parameter %+v", p)
			}
			if !p.HasValue && p.Value != "" {
				t.Fatalf("value without '=': %+v", p)
			}
			if _, ok := c.Lookup(p.Key); !ok && p.Key != "" {
				t.Fatalf("Lookup(%q) finds nothing", p.Key)
			}
		}
		for _, k := range []string{"ext-setup-root.debug", "systemd.confext", "rd.systemd.sysext"} {
			c.Bool(false, k)
			c.UnitSwitchOff(k)
		}
	})
}

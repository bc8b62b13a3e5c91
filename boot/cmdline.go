package boot

import (
	"fmt"
	"io"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
)

// Cmdline holds the kernel command line switches the pipeline honours.
// The zero value means "nothing set": both stages run, confexts and
// sysexts are merged, no debug, no dry run.
type Cmdline struct {
	// ConfextOff is systemd.confext= turning confexts off for the real
	// root, as systemd 262's systemd-confext-sysroot.service (our pre and
	// post stages) and systemd-confext.service (our late-confext stage)
	// read it: any word systemd.confext=0, or a last systemd.confext=
	// value that is a false boolean (kcmdline.UnitSwitchOff). No confext
	// merge or refresh at all.
	ConfextOff bool
	// SysextOff is the same for systemd.sysext= (systemd-sysext-sysroot
	// and systemd-sysext.service): no sysext merge or refresh.
	SysextOff bool
	// InitrdConfextOff and InitrdSysextOff are rd.systemd.confext= and
	// rd.systemd.sysext= read the same way. In systemd 262 they reach only
	// systemd-confext-initrd.service and systemd-sysext-initrd.service,
	// which merge the initrd's own /etc, /usr and /opt; no stage of ours
	// touches those, so these only make the initrd stages say that the
	// switch does not reach /sysroot.
	InitrdConfextOff, InitrdSysextOff bool
	// Debug is ext-setup-root.debug: debug log lines on.
	Debug bool
	// DryRun is ext-setup-root.dry-run: log what would be done, change nothing.
	DryRun bool
	// PreOff and PostOff are ext-setup-root.stage.pre=0 and
	// ext-setup-root.stage.post=0: the stage logs that it is disabled and
	// succeeds without doing anything.
	PreOff, PostOff bool
	// PrepareOff is ext-setup-root.prepare=0: the pre stage's /etc
	// hygiene and first-boot duties (package prepare) are not run.
	PrepareOff bool
	// Essential is ext-setup-root.essential=NAME[,NAME...]: replaces the
	// essential confext patterns; nil when not given, empty for
	// "ext-setup-root.essential=" (nothing essential).
	Essential []string
	// LateRefresh is ext-setup-root.late-refresh=auto|ours|stock: which
	// refresh the late stages in the booted system run (see LateRefresh);
	// "" when not given. The value is kept as written so that RunLate can
	// name a wrong one in its log instead of the boot failing on it.
	LateRefresh LateRefresh
	// ImagePolicy is ext-setup-root.image-policy=POLICY (systemd's
	// --image-policy= syntax) for raw confexts and sysexts; it replaces
	// boot.toml's image_policy. "" when not given; an invalid policy is
	// listed in Problems and ignored, as systemd ignores an invalid
	// systemd.image_policy=.
	ImagePolicy string
	// Problems are the switches whose value could not be read (each kept
	// its default), for the caller to log.
	Problems []string
}

// ParseCmdline reads a kernel command line (the contents of /proc/cmdline)
// from r with the module's one parser (internal/kcmdline): double quotes
// group words, '-' and '_' in keys are alike, the last occurrence of a
// switch wins, unknown words are ignored. A switch with an unreadable
// boolean keeps its default and is listed in Problems for the log. The
// systemd extension switches are read as systemd 262's units read them,
// each key on its own (see ConfextOff).
func ParseCmdline(r io.Reader) (Cmdline, error) {
	var c Cmdline
	kc, err := kcmdline.Parse(r)
	if err != nil {
		return c, err
	}
	flag := func(def bool, keys ...string) bool {
		v, err := kc.Bool(def, keys...)
		if err != nil {
			c.Problems = append(c.Problems, err.Error())
		}
		return v
	}
	unitOff := func(key string) bool {
		off, err := kc.UnitSwitchOff(key)
		if err != nil {
			c.Problems = append(c.Problems, err.Error())
		}
		return off
	}
	c.ConfextOff = unitOff("systemd.confext")
	c.SysextOff = unitOff("systemd.sysext")
	c.InitrdConfextOff = unitOff("rd.systemd.confext")
	c.InitrdSysextOff = unitOff("rd.systemd.sysext")
	c.Debug = flag(false, "ext-setup-root.debug")
	c.DryRun = flag(false, "ext-setup-root.dry-run")
	c.PreOff = !flag(true, "ext-setup-root.stage.pre")
	c.PostOff = !flag(true, "ext-setup-root.stage.post")
	c.PrepareOff = !flag(true, "ext-setup-root.prepare")
	if v, ok := kc.Get("ext-setup-root.late-refresh"); ok {
		c.LateRefresh = LateRefresh(v)
	}
	if v, ok := kc.Get("ext-setup-root.image-policy"); ok {
		if _, err := image.ParsePolicy(v); err != nil {
			c.Problems = append(c.Problems, fmt.Sprintf("ext-setup-root.image-policy: %v, ignoring", err))
		} else {
			c.ImagePolicy = v
		}
	}
	if v, ok := kc.Get("ext-setup-root.essential"); ok {
		c.Essential = []string{}
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				c.Essential = append(c.Essential, p)
			}
		}
	}
	return c, nil
}

package boot

import (
	"bufio"
	"io"
	"strings"
	"unicode"

	"github.com/ext-setup-root/ext-setup-root/extension"
)

// Cmdline holds the kernel command line switches the pipeline honours.
// The zero value means "nothing set": both stages run, confexts and
// sysexts are merged, no debug, no dry run.
type Cmdline struct {
	// ConfextOff is systemd.confext=0 or rd.systemd.confext=0: no confext
	// merge or refresh at all (the systemd 261 switch of the same name).
	ConfextOff bool
	// SysextOff is systemd.sysext=0 or rd.systemd.sysext=0: no sysext merge.
	SysextOff bool
	// Debug is ext-setup-root.debug: debug log lines on.
	Debug bool
	// DryRun is ext-setup-root.dry-run: log what would be done, change nothing.
	DryRun bool
	// PreOff and PostOff are ext-setup-root.stage.pre=0 and
	// ext-setup-root.stage.post=0: the stage logs that it is disabled and
	// succeeds without doing anything.
	PreOff, PostOff bool
	// Essential is ext-setup-root.essential=NAME[,NAME...]: replaces the
	// essential confext patterns; nil when not given, empty for
	// "ext-setup-root.essential=" (nothing essential).
	Essential []string
	// LateRefresh is ext-setup-root.late-refresh=auto|ours|stock: which
	// refresh the late stages in the booted system run (see LateRefresh);
	// "" when not given. The value is kept as written so that RunLate can
	// name a wrong one in its log instead of the boot failing on it.
	LateRefresh LateRefresh
}

// ParseCmdline reads a kernel command line (the contents of /proc/cmdline)
// from r. Words are split on white space, double quotes group words as the
// kernel does; a later occurrence of a switch overrides an earlier one, as
// in systemd. Unknown words are ignored.
func ParseCmdline(r io.Reader) (Cmdline, error) {
	var c Cmdline
	b, err := io.ReadAll(bufio.NewReader(r))
	if err != nil {
		return c, err
	}
	for _, w := range splitCmdline(string(b)) {
		key, val, hasVal := strings.Cut(w, "=")
		on := func() bool {
			if !hasVal {
				return true
			}
			v, ok := extension.ParseBoolean(val)
			return ok && v
		}
		switch key {
		case "systemd.confext", "rd.systemd.confext":
			if hasVal {
				if v, ok := extension.ParseBoolean(val); ok {
					c.ConfextOff = !v
				}
			}
		case "systemd.sysext", "rd.systemd.sysext":
			if hasVal {
				if v, ok := extension.ParseBoolean(val); ok {
					c.SysextOff = !v
				}
			}
		case "ext-setup-root.debug":
			c.Debug = on()
		case "ext-setup-root.dry-run", "ext-setup-root.dry_run":
			c.DryRun = on()
		case "ext-setup-root.stage.pre":
			c.PreOff = !on()
		case "ext-setup-root.stage.post":
			c.PostOff = !on()
		case "ext-setup-root.late-refresh", "ext-setup-root.late_refresh":
			c.LateRefresh = LateRefresh(val)
		case "ext-setup-root.essential":
			c.Essential = []string{}
			for _, p := range strings.Split(val, ",") {
				if p = strings.TrimSpace(p); p != "" {
					c.Essential = append(c.Essential, p)
				}
			}
		}
	}
	return c, nil
}

// splitCmdline splits like the kernel's next_arg: white space separates
// words, a double quote toggles quoting and is removed.
func splitCmdline(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case unicode.IsSpace(r) && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

package boot

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// Late stages, run by the host drop-ins for systemd-confext.service and
// systemd-sysext.service in the booted system.
const (
	StageLateConfext Stage = "late-confext"
	StageLateSysext  Stage = "late-sysext"
)

// LateRefresh selects the late refresh (kernel command line
// ext-setup-root.late-refresh=).
type LateRefresh string

const (
	// LateAuto (the default) runs ext-setup-root's refresh, on every
	// systemd version (see RunLate).
	LateAuto LateRefresh = "auto"
	// LateOurs is LateAuto, said explicitly (kept for command lines that
	// chose it when auto still handed over to the stock tool on systemd
	// >= 260).
	LateOurs LateRefresh = "ours"
	// LateStock execs the stock systemd-<class> refresh: systemd's own
	// behaviour, for comparison or as a way out. It unmerges before it
	// merges when something changed.
	LateStock LateRefresh = "stock"
)

// LateOptions configure RunLate.
type LateOptions struct {
	Stage Stage
	Root  string
	Ext   Extensions
	Log   *oplog.Logger
	// Mode is the kernel command line's choice; "" means LateAuto, and
	// an unknown value is logged and treated as LateAuto.
	Mode LateRefresh
	// SystemdVersion, if set, returns the version of the installed
	// systemd-confext or systemd-sysext (ParseSystemdVersion of its
	// --version output). It is only logged: the choice of refresh does not
	// depend on it.
	SystemdVersion func(tool string) (int, error)
	// ExecStock replaces the process with the stock tool (argv[0] is the
	// tool name); it only returns on failure.
	ExecStock func(argv []string) error
	// Reload asks the service manager to reload its units (`systemctl
	// daemon-reload`), as systemd-<class> refresh does after a change, so
	// that units shipped in the new extensions are seen; nil skips it.
	Reload func() error
	Now    func() time.Time
	// Cmdline are the kernel command line switches: ConfextOff and
	// SysextOff stop the stage before anything else.
	Cmdline Cmdline
	// DryRun logs what the stage would do and changes nothing
	// (ext-setup-root.dry-run or --dry-run).
	DryRun bool
	// ImagePolicy is the image policy of the boot stages
	// (ext-setup-root.image-policy= on the kernel command line, else
	// boot.toml's image_policy); the late
	// refresh applies the same policy as the initrd merge, or it would
	// merge in the booted system what the initrd refused. "" leaves it
	// to ImagePolicy= in the class's .conf, then the class default.
	ImagePolicy string
}

// RunLate is the late refresh in the booted system. It runs
// ext-setup-root's refresh on every systemd version: that decides
// "unchanged" itself (origin record, image identities, in-place edits of
// directory images) and skips, printing systemd's skip line; any change (a
// confext added under /run/confexts by an early service, an updated user
// confext) is applied by mounting the new merge beneath the old one and
// detaching the old one, so /etc is never without its confext files. The
// stock `systemd-<class> refresh` of systemd >= 260 also skips an
// unchanged merge, but applies a change by unmerging and merging again:
// /etc then lacks the confext files for milliseconds (a QEMU boot with one
// confext added before the booted refresh saw 348 failed stats of a
// default-confext file on slot A and 508 on slot B). Only
// ext-setup-root.late-refresh=stock hands over to the stock tool.
//
// The kill switch comes first, as in the stock unit: systemd.confext=
// (systemd.sysext=) off, read as systemd-confext.service reads it, makes
// the stage log that it is disabled and succeed; the drop-in replaces
// only ExecStart=, so the unit's ConditionKernelCommandLine= still covers
// the literal systemd.confext=0, and this check covers the tool's own
// (any false boolean, last word wins). A dry run logs what it would do.
func RunLate(ctx context.Context, o LateOptions) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = oplog.Discard()
	}
	class, mutable := Confext, "auto"
	if o.Stage == StageLateSysext {
		class, mutable = Sysext, ""
	} else if o.Stage != StageLateConfext {
		return fmt.Errorf("unknown late stage %q", o.Stage)
	}
	start := o.Now()
	if sw, off := o.killSwitch(class); off {
		o.Log.Noticef("%s refresh skipped: %s on the kernel command line", class, sw)
		s := &Summary{Stage: o.Stage, Duration: o.Now().Sub(start), Disabled: sw}
		o.Log.Noticef("%s", s)
		return nil
	}
	if o.DryRun {
		o.Log.Infof("dry run: would refresh %ss in %s (%s)", class, o.Root, lateChoice(o.Mode))
		s := &Summary{Stage: o.Stage, Duration: o.Now().Sub(start), Disabled: "ext-setup-root.dry-run"}
		o.Log.Noticef("%s", s)
		return nil
	}
	if stock, err := o.chooseRefresh(class); stock || err != nil {
		return err
	}
	if o.Ext == nil {
		return fmt.Errorf("%s refresh: %w", class, ErrEnginesUnavailable)
	}
	return o.refresh(ctx, class, mutable, start)
}

// killSwitch names the switch that turns the class off, if one does.
func (o *LateOptions) killSwitch(class Class) (string, bool) {
	if class == Confext && o.Cmdline.ConfextOff {
		return "systemd.confext=0", true
	}
	if class == Sysext && o.Cmdline.SysextOff {
		return "systemd.sysext=0", true
	}
	return "", false
}

// lateChoice names the refresh a mode selects, for the dry run's line.
func lateChoice(m LateRefresh) string {
	if m == LateStock {
		return "the stock tool's, ext-setup-root.late-refresh=stock"
	}
	return "ext-setup-root's atomic refresh"
}

// chooseRefresh logs which refresh runs; for LateStock it execs the stock
// tool (stock is true, and err is set only when the exec failed).
func (o *LateOptions) chooseRefresh(class Class) (stock bool, err error) {
	tool := "systemd-" + string(class)
	const sw = "ext-setup-root.late-refresh"
	switch o.Mode {
	case LateStock:
		o.Log.Infof("%s=stock on the kernel command line: handing over to %s refresh", sw, tool)
		argv := []string{tool, "refresh"}
		if o.Root != "" && path.Clean(o.Root) != "/" {
			argv = append(argv, "--root="+o.Root)
		}
		return true, o.ExecStock(argv)
	case LateOurs:
		o.Log.Infof("%s=ours on the kernel command line: using ext-setup-root's atomic refresh", sw)
	default:
		if o.Mode != "" && o.Mode != LateAuto {
			o.Log.Warnf("%s=%s on the kernel command line is not auto, ours or stock; using auto", sw, o.Mode)
		}
		ver := "unknown"
		if o.SystemdVersion != nil {
			if v, err := o.SystemdVersion(tool); err == nil {
				ver = fmt.Sprint(v)
			}
		}
		o.Log.Infof("using ext-setup-root's atomic refresh instead of %s refresh (systemd %s): it skips an unchanged merge and replaces a changed one without unmerging", tool, ver)
	}
	return false, nil
}

// refresh runs our refresh, reloads units after a change, and logs what
// happened to the merge and the stage's summary line.
func (o *LateOptions) refresh(ctx context.Context, class Class, mutable string, start time.Time) error {
	// Whether a merge was there before decides the wording: a refresh of
	// nothing merges, and must not claim it replaced anything.
	before, merr := o.Ext.Merged(ctx, o.Root, class)
	if merr != nil {
		o.Log.Warnf("cannot tell whether %s are merged in %s: %v", class, o.Root, merr)
	}
	req := ExtRequest{Class: class, Root: o.Root, DefaultMutable: mutable, ImagePolicy: o.ImagePolicy}
	op := o.Log.Op("%s refresh in %s", class, o.Root)
	res, err := o.Ext.Refresh(ctx, req)
	op.Finish(err)
	s := &Summary{Stage: o.Stage, Duration: o.Now().Sub(start), Err: err}
	if err != nil {
		o.Log.Errorf("%s", s)
		return fmt.Errorf("%s refresh: %w", class, err)
	}
	if !res.Unchanged && o.Reload != nil {
		rop := o.Log.Op("systemctl daemon-reload (the %s merge changed)", class)
		if rerr := rop.Finish(o.Reload()); rerr != nil {
			// The merge itself is in place; a failed reload only delays
			// units from the new extensions until the next reload.
			o.Log.Warnf("daemon-reload after the %s refresh failed: %v", class, rerr)
		}
	}
	switch {
	case res.Unchanged:
		o.Log.Infof("%s merge unchanged: refresh skipped, nothing remounted", class)
	case !before && merr == nil:
		o.Log.Noticef("%s merged (nothing was merged before): %d merged", class, len(res.Merged))
	case res.Gaps > 0:
		o.Log.Warnf("%s merge replaced by unmount-then-mount (this kernel has no MOVE_MOUNT_BENEATH): %d merged, the hierarchy was bare for a moment", class, len(res.Merged))
	default:
		o.Log.Noticef("%s merge replaced atomically (new merge mounted beneath the old one, then the old one detached): %d merged", class, len(res.Merged))
	}
	if class == Confext {
		s.Confext = &res
	} else {
		s.Sysext = &res
	}
	o.Log.Noticef("%s", s)
	return nil
}

// ParseSystemdVersion reads the major version from the first line of a
// systemd tool's --version output ("systemd 262 (262.1-1)").
func ParseSystemdVersion(r io.Reader) (int, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("empty --version output")
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "systemd" {
		return 0, fmt.Errorf("unexpected --version line %q", strings.TrimSpace(line))
	}
	n, err := strconv.Atoi(strings.SplitN(f[1], ".", 2)[0])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("unexpected systemd version %q", f[1])
	}
	return n, nil
}

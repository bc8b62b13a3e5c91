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

// SkipRefreshSince is the first systemd version whose refresh skips an
// unchanged merge (PR 39980, v260): from it on the stock refresh is used.
const SkipRefreshSince = 260

// LateRefresh selects the late refresh (kernel command line
// ext-setup-root.late-refresh=).
type LateRefresh string

const (
	// LateAuto (the default) decides by the systemd version: the stock
	// refresh from SkipRefreshSince on, ext-setup-root's before it.
	LateAuto LateRefresh = "auto"
	// LateOurs always runs ext-setup-root's atomic refresh, as on a
	// systemd older than SkipRefreshSince; it lets a system with a new
	// systemd exercise (or fall back to) that path.
	LateOurs LateRefresh = "ours"
	// LateStock always execs the stock systemd-<class> refresh.
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
	// SystemdVersion returns the version of the installed systemd-confext
	// or systemd-sysext (ParseSystemdVersion of its --version output).
	SystemdVersion func(tool string) (int, error)
	// ExecStock replaces the process with the stock tool (argv[0] is the
	// tool name); it only returns on failure.
	ExecStock func(argv []string) error
	// Reload asks the service manager to reload its units (`systemctl
	// daemon-reload`), as systemd-<class> refresh does after a change, so
	// that units shipped in the new extensions are seen; nil skips it.
	Reload func() error
	Now    func() time.Time
}

// RunLate is the late refresh in the booted system. With systemd >=
// SkipRefreshSince it hands over to the stock `systemd-<class> refresh`,
// which skips an unchanged merge itself, so its journal lines stay exactly
// systemd's. With an older systemd, whose refresh unmerges and merges again
// (leaving /etc missing for a moment), it runs our refresh: it skips when
// the origin record is unchanged and otherwise replaces the merge
// atomically. If the version cannot be told, ours runs: it is the safe one.
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
	tool := "systemd-" + string(class)
	start := o.Now()
	stock := func() error {
		argv := []string{tool, "refresh"}
		if o.Root != "" && path.Clean(o.Root) != "/" {
			argv = append(argv, "--root="+o.Root)
		}
		return o.ExecStock(argv)
	}
	const sw = "ext-setup-root.late-refresh"
	switch o.Mode {
	case LateOurs:
		o.Log.Infof("%s=ours on the kernel command line: using ext-setup-root's atomic refresh instead of %s refresh", sw, tool)
	case LateStock:
		o.Log.Infof("%s=stock on the kernel command line: handing over to %s refresh", sw, tool)
		return stock()
	default:
		if o.Mode != "" && o.Mode != LateAuto {
			o.Log.Warnf("%s=%s on the kernel command line is not auto, ours or stock; using auto", sw, o.Mode)
		}
		v, err := o.SystemdVersion(tool)
		switch {
		case err != nil:
			o.Log.Warnf("cannot tell the systemd version from %s --version (%v); using ext-setup-root's atomic refresh", tool, err)
		case v >= SkipRefreshSince:
			o.Log.Infof("systemd %d >= %d skips unchanged refreshes itself: handing over to %s refresh", v, SkipRefreshSince, tool)
			return stock()
		default:
			o.Log.Infof("systemd %d < %d would unmerge before merging: using ext-setup-root's atomic refresh", v, SkipRefreshSince)
		}
	}
	if o.Ext == nil {
		return fmt.Errorf("%s refresh: %w", class, ErrEnginesUnavailable)
	}
	req := ExtRequest{Class: class, Root: o.Root, DefaultMutable: mutable}
	op := o.Log.Op("%s refresh in %s", class, o.Root)
	res, err := o.Ext.Refresh(ctx, req)
	op.Finish(err)
	s := &Summary{Stage: o.Stage, Duration: o.Now().Sub(start), Err: err}
	if err == nil && !res.Unchanged && o.Reload != nil {
		rop := o.Log.Op("systemctl daemon-reload (the %s merge changed)", class)
		if rerr := rop.Finish(o.Reload()); rerr != nil {
			// The merge itself is in place; a failed reload only delays
			// units from the new extensions until the next reload.
			o.Log.Warnf("daemon-reload after the %s refresh failed: %v", class, rerr)
		}
	}
	if err == nil {
		if res.Unchanged {
			o.Log.Infof("%s merge unchanged: refresh skipped, nothing remounted", class)
		} else {
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
	o.Log.Errorf("%s", s)
	return fmt.Errorf("%s refresh: %w", class, err)
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

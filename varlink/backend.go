package varlink

import (
	"context"
	"fmt"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/boot"
	"github.com/ext-setup-root/ext-setup-root/extension"
	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// EngineBackend runs the methods with ext-setup-root's extension engine on
// Root, exactly as the booted system's late refresh does: the hierarchy
// lock (taken by the engine), the image policy of the boot stages, mutable
// mode "auto" for confexts when nothing is configured (so the origin record
// matches the initrd's merge), and a daemon-reload after a change.
type EngineBackend struct {
	Root   string
	Getenv func(string) string
	Log    *oplog.Logger
	// ImagePolicy is the boot stages' policy text (kernel command line,
	// else boot.toml's image_policy; "" leaves it to the class's .conf).
	ImagePolicy string
	// Reload runs `systemctl daemon-reload`; nil skips it.
	Reload func() error
}

func (b *EngineBackend) request(c Class, o Options) boot.ExtRequest {
	r := boot.ExtRequest{Class: boot.Class(c), Root: b.Root, ImagePolicy: b.ImagePolicy,
		AlwaysRefresh: o.AlwaysRefresh, Force: o.Force, Noexec: o.Noexec}
	if c == Confext {
		r.DefaultMutable = "auto"
	}
	return r
}

func (b *EngineBackend) engine() boot.ExtEngine {
	return boot.ExtEngine{Getenv: b.Getenv, Log: b.Log}
}

// Merge implements Backend.
func (b *EngineBackend) Merge(ctx context.Context, c Class, o Options) error {
	op := b.Log.Op("varlink: %s merge in %s", c, b.Root)
	res, err := b.engine().Merge(ctx, b.request(c, o))
	if op.Finish(err) != nil {
		return err
	}
	b.after(c, res, o.NoReload)
	return nil
}

// Refresh implements Backend.
func (b *EngineBackend) Refresh(ctx context.Context, c Class, o Options) error {
	op := b.Log.Op("varlink: %s refresh in %s (atomic: new merge mounted beneath the old one)", c, b.Root)
	res, err := b.engine().Refresh(ctx, b.request(c, o))
	if op.Finish(err) != nil {
		return err
	}
	b.after(c, res, o.NoReload)
	return nil
}

// after logs what a merge or refresh did and reloads the service manager
// after a change, unless the caller said noReload.
func (b *EngineBackend) after(c Class, res boot.ExtResult, noReload bool) {
	switch {
	case res.Unchanged:
		b.Log.Infof("varlink: %s merge unchanged: refresh skipped, nothing remounted", c)
		return
	case res.Gaps > 0:
		b.Log.Warnf("varlink: %s merge replaced by unmount-then-mount (this kernel has no MOVE_MOUNT_BENEATH): %d merged", c, len(res.Merged))
	default:
		b.Log.Noticef("varlink: %s merge in place: %d merged, %d skipped", c, len(res.Merged), len(res.Skipped))
	}
	if noReload || b.Reload == nil {
		return
	}
	rop := b.Log.Op("systemctl daemon-reload (the %s merge changed)", c)
	if err := rop.Finish(b.Reload()); err != nil {
		// The merge is in place; a failed reload only delays units of
		// new extensions until the next reload.
		b.Log.Warnf("daemon-reload after the %s change failed: %v", c, err)
	}
}

// Unmerge implements Backend.
func (b *EngineBackend) Unmerge(ctx context.Context, c Class, noReload bool) error {
	o, err := b.options(c)
	if err != nil {
		return err
	}
	op := b.Log.Op("varlink: %s unmerge in %s", c, b.Root)
	res, err := extension.Unmerge(ctx, o)
	if op.Finish(err) != nil {
		return err
	}
	if res != nil && res.Unmerged && !noReload && b.Reload != nil {
		rop := b.Log.Op("systemctl daemon-reload (the %s merge was removed)", c)
		if err := rop.Finish(b.Reload()); err != nil {
			b.Log.Warnf("daemon-reload after the %s unmerge failed: %v", c, err)
		}
	}
	return nil
}

// List implements Backend.
func (b *EngineBackend) List(ctx context.Context, c Class) ([]extension.ImageDetails, error) {
	o, err := b.options(c)
	if err != nil {
		return nil, err
	}
	return extension.ListDetails(ctx, o)
}

func (b *EngineBackend) options(c Class) (extension.Options, error) {
	cls := config.Sysext
	if c == Confext {
		cls = config.Confext
	}
	o := extension.Options{Root: b.Root, Class: cls, Getenv: b.Getenv, Log: b.Log, NoReload: true, Info: infoLines{b.Log}}
	if b.ImagePolicy != "" {
		p, err := image.ParsePolicy(b.ImagePolicy)
		if err != nil {
			return o, fmt.Errorf("image policy %q: %w", b.ImagePolicy, err)
		}
		o.ImagePolicy = p
	}
	return o, nil
}

// infoLines logs each of systemd's user-facing lines ("Merged extensions
// into '/etc'.") the engine prints.
type infoLines struct{ log *oplog.Logger }

func (w infoLines) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if l != "" {
			w.log.Infof("%s", l)
		}
	}
	return len(p), nil
}

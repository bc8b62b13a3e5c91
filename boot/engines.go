package boot

import (
	"context"

	"github.com/ext-setup-root/ext-setup-root/prepare"
)

// Class names the extension class a request is about.
type Class string

// The two classes the pipeline merges.
const (
	Confext Class = "confext"
	Sysext  Class = "sysext"
)

// ExtRequest is one merge or refresh the pipeline asks of the extension
// engine.
type ExtRequest struct {
	Class Class
	// Root is the target root (/sysroot in the initrd).
	Root string
	// Mutable is the mutable mode to force; empty lets the engine resolve
	// it like systemd: environment, then the root's systemd/<class>.conf.
	Mutable string
	// DefaultMutable is the mode to use when Mutable is empty and neither
	// the environment nor the root's config sets one (systemd's default
	// would be "no"). The boot stages use "auto" for confexts, so that the
	// extensions.mutable/etc -> /etc link makes /etc the upper dir.
	DefaultMutable string
	// Essential lists name patterns (path.Match syntax) of images that must
	// not be skipped.
	Essential []string
	// AlwaysRefresh makes a refresh replace the merge even when its record
	// is unchanged: the prepare step changed the upper dir underneath a
	// merged /etc, which the overlay may not show until it is remounted.
	AlwaysRefresh bool
	// ImagePolicy is the image policy text for raw images ("" = the
	// class's .conf, then systemd's class default).
	ImagePolicy string
	// Force skips the extension-release checks and Noexec, if set, forces
	// noexec on or off (systemd's --force and --noexec=, the Varlink
	// methods' force and noexec parameters).
	Force  bool
	Noexec *bool
}

// Skip is an image the engine left out, with the reason it logged.
type Skip struct {
	Name   string
	Reason string
}

// ExtResult is what a merge or refresh did.
type ExtResult struct {
	// Merged are the names of the images in the resulting merge.
	Merged []string
	// Skipped are the images found but left out.
	Skipped []Skip
	// Unchanged is set when a refresh found nothing to do and kept the
	// existing merge.
	Unchanged bool
	// Gaps counts hierarchies replaced by unmount-then-mount (a kernel
	// without MOVE_MOUNT_BENEATH): each left the path bare for a moment.
	Gaps int
}

// Extensions is the extension engine as the pipeline uses it. Merge and
// Refresh must leave the hierarchy either as it was or fully replaced,
// never unmounted; images that cannot be used are skipped and reported in
// ExtResult.Skipped, and an error is returned only when the operation as a
// whole failed.
type Extensions interface {
	// Merged reports whether the class's hierarchies in root carry a merge
	// (ours or systemd's).
	Merged(ctx context.Context, root string, class Class) (bool, error)
	Merge(ctx context.Context, req ExtRequest) (ExtResult, error)
	Refresh(ctx context.Context, req ExtRequest) (ExtResult, error)
}

// Rerecorder is implemented by an Extensions engine that can correct the
// origin record of a merge it made earlier in the same process, when only
// the weak identity (mount id, file handle) of the same image files changed
// (extension.Rerecord). The pipeline uses it when the engine has it.
type Rerecorder interface {
	Rerecord(ctx context.Context, req ExtRequest) (RerecordResult, error)
}

// RerecordResult is what a Rerecord did: Rewritten, or why not.
type RerecordResult struct {
	Rewritten bool
	Reason    string
}

// SelectResult summarises an A/B selection run.
type SelectResult struct {
	// Changes counts the links, moves and removals that changed the disk
	// (or are planned, in a dry run).
	Changes int
}

// Selector is the A/B slot selection engine: it picks the images of the
// booted slot and points the active links at them.
type Selector interface {
	Select(ctx context.Context, root string, dryRun bool) (SelectResult, error)
}

// RootOps are the few direct changes and checks the pipeline makes inside
// the root itself; RootDir implements them by file descriptor.
type RootOps interface {
	// EnsureMutableLink makes var/lib/extensions.mutable/etc a symlink to
	// /etc unless something already exists there.
	EnsureMutableLink(root string, dryRun bool) (LinkState, error)
	// SysextMasked reports whether systemd-sysext.service is masked in the
	// root's /etc/systemd/system.
	SysextMasked(root string) (bool, error)
}

// Preparer runs the /etc hygiene and first-boot duties (package prepare)
// on root; the result is reported in the stage summary.
type Preparer interface {
	Prepare(ctx context.Context, req PrepareRequest) (*prepare.Result, error)
}

// PrepareRequest is one prepare step of the pre stage.
type PrepareRequest struct {
	Root   string
	DryRun bool
	// NoMerge says why no confext merge follows (systemd.confext=0): the
	// dedup removes nothing then, as nothing would show the defaults.
	NoMerge string
	// Essential are the confext patterns the merge requires: the dedup's
	// view of the merge refuses what the merge refuses.
	Essential []string
}

package varlink

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/ext-setup-root/ext-setup-root/extension"
)

// Class is an image class as the interface names it (type ImageClass).
type Class string

// The two classes; Sysext is the default, as for systemd-sysext, which
// the socket units start.
const (
	Sysext  Class = "sysext"
	Confext Class = "confext"
)

// Options are the parameters of Merge and Refresh.
type Options struct {
	Force         bool
	NoReload      bool
	AlwaysRefresh bool
	// Noexec is nil when the caller left it to the class default.
	Noexec *bool
}

// Backend performs the methods. Merge returns an
// *extension.AlreadyMergedError when a merge is in place.
type Backend interface {
	Merge(ctx context.Context, c Class, o Options) error
	Refresh(ctx context.Context, c Class, o Options) error
	Unmerge(ctx context.Context, c Class, noReload bool) error
	List(ctx context.Context, c Class) ([]extension.ImageDetails, error)
}

// errNoImagesFound is io.systemd.sysext.NoImagesFound (List found none).
var errNoImagesFound = &Error{Name: "io.systemd.sysext.NoImagesFound"}

// SysextMethods returns the methods of io.systemd.sysext and
// io.systemd.SysUpdate.Notify, served by b.
func SysextMethods(b Backend) map[string]Method {
	s := sysext{b}
	return map[string]Method{
		"io.systemd.sysext.Merge":                       s.merge,
		"io.systemd.sysext.Unmerge":                     s.unmerge,
		"io.systemd.sysext.Refresh":                     s.refresh,
		"io.systemd.sysext.List":                        s.list,
		"io.systemd.SysUpdate.Notify.OnCompletedUpdate": s.onCompletedUpdate,
	}
}

type sysext struct{ b Backend }

// The parameters each method takes (systemd 262's IDL).
var (
	mergeParams = map[string]kind{"class": kindString, "force": kindBool, "noReload": kindBool,
		"noexec": kindBool, "allowInteractiveAuthentication": kindBool}
	refreshParams = map[string]kind{"class": kindString, "force": kindBool, "noReload": kindBool,
		"alwaysRefresh": kindBool, "noexec": kindBool, "allowInteractiveAuthentication": kindBool}
	unmergeParams = map[string]kind{"class": kindString, "noReload": kindBool, "allowInteractiveAuthentication": kindBool}
	listParams    = map[string]kind{"class": kindString, "allowInteractiveAuthentication": kindBool}
	notifyParams  = map[string]kind{"component": kindNullString, "version": kindNullString, "resources": kindNullArray}
)

// params decodes r's parameters and its class; changing methods also
// require a privileged peer (after the parameters are checked, as
// systemd checks them before asking polkit).
func params(r *Request, want map[string]kind, changes bool) (map[string]json.RawMessage, Class, error) {
	p, err := decodeParams(r.Call.Parameters, want)
	if err != nil {
		return nil, "", err
	}
	c := Sysext
	if s, ok, err := stringParam(p, "class"); err != nil {
		return nil, "", err
	} else if ok {
		if c = Class(s); c != Sysext && c != Confext {
			return nil, "", errInvalidParameter("class")
		}
	}
	if changes && !r.Peer.Privileged() {
		// No polkit here: only root may change merges. systemd's
		// polkit policy (io.systemd.<class>.manage) wants an
		// administrator too.
		return nil, "", errPermissionDenied
	}
	return p, c, nil
}

func mergeOptions(p map[string]json.RawMessage) Options {
	o := Options{Force: boolParam(p, "force", false), NoReload: boolParam(p, "noReload", false),
		AlwaysRefresh: boolParam(p, "alwaysRefresh", false)}
	if _, ok := p["noexec"]; ok {
		v := boolParam(p, "noexec", false)
		o.Noexec = &v
	}
	return o
}

func (s sysext) merge(ctx context.Context, r *Request) error {
	p, c, err := params(r, mergeParams, true)
	if err != nil {
		return err
	}
	err = s.b.Merge(ctx, c, mergeOptions(p))
	var am *extension.AlreadyMergedError
	if errors.As(err, &am) {
		return &Error{Name: "io.systemd.sysext.AlreadyMerged", Parameters: map[string]string{"hierarchy": am.Hierarchy}}
	}
	return err
}

func (s sysext) refresh(ctx context.Context, r *Request) error {
	p, c, err := params(r, refreshParams, true)
	if err != nil {
		return err
	}
	return s.b.Refresh(ctx, c, mergeOptions(p))
}

func (s sysext) unmerge(ctx context.Context, r *Request) error {
	p, c, err := params(r, unmergeParams, true)
	if err != nil {
		return err
	}
	return s.b.Unmerge(ctx, c, boolParam(p, "noReload", false))
}

// listEntry is one reply of List, with systemd 262's field names; unset
// nullable fields are left out, as systemd does.
type listEntry struct {
	Type                  string `json:"Type"`
	Class                 Class  `json:"Class"`
	Name                  string `json:"Name"`
	Path                  string `json:"Path,omitempty"`
	ReadOnly              bool   `json:"ReadOnly"`
	CreationTimestamp     uint64 `json:"CreationTimestamp,omitempty"`
	ModificationTimestamp uint64 `json:"ModificationTimestamp,omitempty"`
	Usage                 *int64 `json:"Usage,omitempty"`
	UsageExclusive        *int64 `json:"UsageExclusive,omitempty"`
	Limit                 *int64 `json:"Limit,omitempty"`
	LimitExclusive        *int64 `json:"LimitExclusive,omitempty"`
}

func (s sysext) list(ctx context.Context, r *Request) error {
	if !r.Call.More {
		return errExpectedMore
	}
	// Reading is allowed to everyone (systemd's polkit policy for
	// io.systemd.<class>.read says yes).
	_, c, err := params(r, listParams, false)
	if err != nil {
		return err
	}
	imgs, err := s.b.List(ctx, c)
	if err != nil {
		return err
	}
	if len(imgs) == 0 {
		return errNoImagesFound
	}
	for i, img := range imgs {
		e := listEntry{Type: img.Type, Class: c, Name: img.Name, Path: img.Path, ReadOnly: img.ReadOnly,
			CreationTimestamp: img.Crtime, ModificationTimestamp: img.Mtime}
		if img.Type == "raw" {
			u, l := img.Usage, img.Limit
			e.Usage, e.UsageExclusive, e.Limit, e.LimitExclusive = &u, &u, &l, &l
		}
		if err := r.Reply(e, i < len(imgs)-1); err != nil {
			return err
		}
	}
	return nil
}

// onCompletedUpdate is systemd-sysupdate's callout after an update: like
// systemd-sysext 262, refresh both classes (sysext first), going on after
// a failure and answering the first one. Only root may call it.
func (s sysext) onCompletedUpdate(ctx context.Context, r *Request) error {
	if _, err := decodeParams(r.Call.Parameters, notifyParams); err != nil {
		return err
	}
	if !r.Peer.Privileged() {
		return errPermissionDenied
	}
	var first error
	for _, c := range []Class{Sysext, Confext} {
		if err := s.b.Refresh(ctx, c, Options{}); err != nil && first == nil {
			first = err
		}
	}
	return first
}

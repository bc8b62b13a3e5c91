package extension

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/record"
)

// Records keeps the metadata directories (.systemd-<C> in the detached
// meta tmpfs) of the merges a process made through Options with Records
// set, so that Rerecord can correct their origin record later in the same
// process. The meta layer is reachable only through these descriptors:
// once assembled, it is a lower layer of the overlay and nowhere mounted.
// The zero value is ready to use; Close releases the descriptors (the
// merges stay).
type Records struct {
	mu   sync.Mutex
	meta map[string]*os.File
}

func recordKey(root, class, h string) string { return class + "\x00" + root + "\x00" + h }

// put stores dot for the merge of class at h in root, replacing (and
// closing) an older one.
func (r *Records) put(root, class, h string, dot *os.File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.meta == nil {
		r.meta = map[string]*os.File{}
	}
	k := recordKey(root, class, h)
	if old := r.meta[k]; old != nil {
		old.Close()
	}
	r.meta[k] = dot
}

func (r *Records) get(root, class, h string) *os.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta[recordKey(root, class, h)]
}

// Close releases every kept descriptor.
func (r *Records) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, f := range r.meta {
		f.Close()
		delete(r.meta, k)
	}
	return nil
}

// RerecordResult tells what Rerecord did.
type RerecordResult struct {
	// Rewritten is set when the origin record was rewritten.
	Rewritten bool
	// Images are the names whose identity was updated.
	Images []string
	// Reason says why nothing was rewritten ("" when Rewritten).
	Reason string
}

// Rerecord brings the origin record of this process's merge of
// opt.Class in line with what `systemd-<class> refresh` would compute now,
// when the only thing that changed since the merge is the weak identity
// (mount id, file handle, inode) under which the very same image files are
// seen. That happens in the initrd when the confext merge over /etc is
// replaced after the sysext merge: Flatcar keeps sysext images under
// /etc/flatcar/sysext, so their mount id changes with the /etc overlay,
// and the booted systemd-sysext would otherwise remount /usr for nothing.
// The merged tree is not touched; only the origin file of the meta layer
// is rewritten, in place (same inode, so the overlay shows the new bytes).
//
// "The very same files" means: the same image names, each with the same
// resolved path, crtime, mtime and verity hash, and no image found that
// the last run did not know. Anything else (an image added, removed or
// replaced, another mutable mode or mount options) needs a real refresh;
// Rerecord then changes nothing and says why. It also changes nothing
// unless opt.Records holds the meta layer of every merged hierarchy and
// that layer belongs to the overlay mounted there now (same "dev").
func Rerecord(ctx context.Context, opt Options) (*RerecordResult, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	if opt.Records == nil {
		return nil, fmt.Errorf("rerecord %s: no Records to find the merge's meta layer in", e.cls.Name)
	}
	locks, err := e.lockHierarchies(ctx)
	if err != nil {
		return nil, err
	}
	defer locks.release()
	r := &rerecord{res: &RerecordResult{}}
	defer closeStates(r.states)
	steps := []func(context.Context, *rerecord) error{e.rerecordRead, e.rerecordImages, e.rerecordCompare, e.rerecordTargets}
	for _, step := range steps {
		if err := step(ctx, r); err != nil || r.res.Reason != "" {
			return r.res, err
		}
	}
	sort.Strings(r.res.Images)
	for _, t := range r.targets {
		op := e.log.Op("rewrite %s/%s/origin (same images, seen under a new mount: %s)", t.s.display, e.cls.DotDir, strings.Join(r.res.Images, ", "))
		if werr := op.Finish(rewriteInPlace(t.dot, "origin", r.data)); werr != nil {
			// A half-written record only costs a remount in the booted
			// system: refresh sees a record that differs and redoes the
			// merge; it never skips wrongly.
			return r.res, fmt.Errorf("rewrite origin of %s: %w", t.s.display, werr)
		}
	}
	r.res.Rewritten = true
	e.saveState(e.newState(r.cands, r.prev.HostRelease, r.inputs))
	return r.res, nil
}

// rerecord is what Rerecord's steps read and decide; a step that finds a
// reason not to rewrite sets res.Reason and the call ends there.
type rerecord struct {
	res     *RerecordResult
	mode    string
	inputs  string
	states  []*hierState
	od      record.Document // the origin record in place
	was     record.Origin   // od, decoded
	prev    *record.State
	cands   []*candidate
	data    []byte // the corrected record
	targets []rerecordTarget
}

// rerecordTarget is a merged hierarchy and its meta layer kept in Records.
type rerecordTarget struct {
	s   *hierState
	dot *os.File
}

// rerecordRead reads the mutable mode, the hierarchies, the origin record
// in place and the last run's state, which must have been taken with the
// same verdict inputs (image policy, trusted certificates, ...).
func (e *engine) rerecordRead(_ context.Context, r *rerecord) error {
	var err error
	if r.mode, err = e.mutableMode(); err != nil {
		return err
	}
	if r.inputs, err = e.verdictInputs(r.mode); err != nil {
		return err
	}
	r.states, err = e.inspectAll()
	if err != nil {
		return err
	}
	first := firstOrigin(r.states)
	if first == nil {
		r.res.Reason = "no merge with an origin record"
		return nil
	}
	if r.od, err = record.ParseOrigin(bytes.NewReader(first.origin)); err != nil {
		r.res.Reason = "the origin record in place does not parse: " + err.Error()
		return nil
	}
	if r.was, err = r.od.Origin(); err != nil {
		r.res.Reason = err.Error()
		return nil
	}
	switch r.prev = e.loadState(); {
	case r.prev == nil:
		r.res.Reason = "no state of the last run"
	case r.prev.Inputs != r.inputs:
		r.res.Reason = "the image policy, mutable mode, noexec, essential list or trusted certificates changed since the last run"
	}
	return nil
}

// rerecordImages requires every image found now to be the file the last
// run saw, with the verdict it had and the place it had in the merge, and
// collects the names whose weak identity changed.
func (e *engine) rerecordImages(ctx context.Context, r *rerecord) error {
	imgs, err := e.discover()
	if err != nil {
		return fmt.Errorf("discover %s images: %w", e.cls.Name, err)
	}
	oldByName := map[string]record.OriginExtension{}
	for _, x := range r.was.Extensions {
		oldByName[x.Name] = x
	}
	for _, img := range imgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		id, err := record.ImageIdentity(e.rfs, img, e.identityOptions())
		if err != nil {
			r.res.Reason = fmt.Sprintf("image %s cannot be identified: %v", img.Name, err)
			return nil
		}
		c := &candidate{img: img, id: id}
		rec, known := r.prev.Images[img.Name]
		if !known || !sameFile(rec.Identity, id) || rec.Type != img.Type.String() {
			r.res.Reason = fmt.Sprintf("image %s is not the file the last run saw", img.Name)
			return nil
		}
		c.accepted, c.reason, c.fp = rec.Accepted, rec.Reason, rec.Fingerprint
		if x, merged := oldByName[img.Name]; merged != c.accepted || (merged && !sameFile(x, id)) {
			r.res.Reason = fmt.Sprintf("image %s is not what the merge in place recorded", img.Name)
			return nil
		}
		if c.accepted && rec.Identity != id {
			r.res.Images = append(r.res.Images, img.Name)
		}
		r.cands = append(r.cands, c)
	}
	if n := len(acceptedNames(r.cands)); n != len(r.was.Extensions) {
		r.res.Reason = fmt.Sprintf("the merge in place recorded %d images, %d are there now", len(r.was.Extensions), n)
	}
	return nil
}

// rerecordCompare requires the rest of the record (mode, dirs, options)
// to be unchanged and builds the corrected record, unless it matches.
func (e *engine) rerecordCompare(_ context.Context, r *rerecord) error {
	doc, err := e.originBase(r.mode)
	if err != nil {
		return err
	}
	rest := *doc
	rest.Extensions = r.was.Extensions
	if !record.Equal(r.od, rest.Document()) {
		r.res.Reason = "mutable mode, mutable dirs or mount options differ from the merge in place"
		return nil
	}
	doc.Extensions = originExtensions(r.cands)
	if record.Equal(r.od, doc.Document()) {
		r.res.Reason = "the record already matches"
		r.res.Images = nil
		return nil
	}
	r.data = doc.MarshalSystemd()
	return nil
}

// rerecordTargets requires every merged hierarchy's meta layer to be ours
// from this process and to belong to the overlay mounted there now.
func (e *engine) rerecordTargets(_ context.Context, r *rerecord) error {
	for _, s := range r.states {
		if !s.ours {
			continue
		}
		dot := e.opt.Records.get(e.rootPath, e.cls.Name, s.h)
		if dot == nil {
			r.res.Reason = fmt.Sprintf("the merge at %s was not made by this process", s.display)
			return nil
		}
		mounted, err1 := readFileIn(s.top, path.Join(e.cls.DotDir, "dev"))
		kept, err2 := readFileIn(dot, "dev")
		if err1 != nil || err2 != nil || !bytes.Equal(mounted, kept) {
			r.res.Reason = fmt.Sprintf("the merge at %s is not the one this process made", s.display)
			return nil
		}
		r.targets = append(r.targets, rerecordTarget{s, dot})
	}
	return nil
}

// sameFile reports whether two identities name the same image file: same
// resolved path, creation and modification time and verity hash. The mount
// id, file handle and inode are left out: they are what changes when the
// same file is seen through a new overlay.
func sameFile(a, b record.OriginExtension) bool {
	return a.Path == b.Path && a.Crtime == b.Crtime && a.Mtime == b.Mtime && a.VerityHash == b.VerityHash
}

// rewriteInPlace replaces the contents of the existing file name in dir,
// keeping its inode.
//
// Why not temp + fsync + rename, the rule for every other write: an
// overlay does not revalidate the dentries it cached from a lower layer,
// and inspect has read origin through the overlay before we get here. A
// file renamed over origin in the meta layer stays invisible through the
// overlay (it serves the old, unlinked inode) until the dentry cache is
// dropped, so the booted refresh would read the stale record and remount;
// TestRerecordAfterEtcReplaced fails with a rename. Rewriting the same
// inode is what the overlay serves at once.
//
// What this gives up is small: the meta layer is a tmpfs, so a crash loses
// the whole merge and no torn file survives one; a concurrent reader can
// see a mix of old and new bytes, which never equals the new record unless
// it is the new record, so a reader can at worst refresh needlessly, never
// skip wrongly. The file is never empty in between: the new bytes are
// written over the old ones from offset 0 in one pwrite and only then cut
// to length (not O_TRUNC first), and a short write is an error.
func rewriteInPlace(dir *os.File, name string, data []byte) error {
	fd, err := openat(int(dir.Fd()), name, unix.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "meta " + name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if n, err := f.WriteAt(data, 0); err != nil || n != len(data) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return &os.PathError{Op: "write", Path: "meta " + name, Err: err}
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		return &os.PathError{Op: "truncate", Path: "meta " + name, Err: err}
	}
	if err := f.Sync(); err != nil {
		return &os.PathError{Op: "fsync", Path: "meta " + name, Err: err}
	}
	return nil
}

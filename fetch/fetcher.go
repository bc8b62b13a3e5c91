package fetch

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/extension"
	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// CheckFunc opens the image at in-root path p of the root at rootPath as
// the image called name, like a merge, validates its extension-release
// against host and returns its fields.
type CheckFunc func(rootPath, p, name string, host release.Host) (map[string]string, error)

// Fetcher implements abslots.Fetcher.
type Fetcher struct {
	Config  Config
	Cmdline *kcmdline.Cmdline
	Log     *oplog.Logger
	// Getenv and ImagePolicy (the effective policy text, "" for the
	// class's) are handed to the extension engine that checks the image.
	Getenv      func(string) string
	ImagePolicy string
	// Check replaces the engine's check (nil: extension.CheckImageFile
	// with the sysext class).
	Check CheckFunc
	// Network, when set, is run once before the first download (in the
	// initrd: StartNetwork); its failure is logged and the download tried
	// anyway, its retries covering a late network.
	Network func(context.Context) error
	netOnce sync.Once

	once   sync.Once
	timing Timing
	client *http.Client
	err    error
}

// rootFS is what Fetch needs of the root: abslots.RootFS provides it.
type rootFS interface {
	Open(name string, flags int, mode uint32) (*os.File, error)
	MkdirAll(name string, mode os.FileMode) error
	CreatePending(name string) (*rootfs.Pending, error)
	Path() string
}

// Essential implements the failure policy: fetch.essential patterns
// (Flatcar's default "oem-*": the boot fails, as bootengine's does) or an
// image abslots already calls essential.
func (f *Fetcher) Essential(m abslots.Missing) bool {
	return m.Essential || f.Config.IsEssential(strings.TrimSuffix(path.Base(m.Link), ".raw"))
}

func (f *Fetcher) setup() error {
	f.once.Do(func() {
		if f.Log == nil {
			f.Log = oplog.Discard()
		}
		if !f.Config.Enabled {
			f.err = errors.New("fetching is disabled (boot.toml [fetch] enabled = false)")
			return
		}
		if f.timing, f.err = f.Config.Validate(); f.err == nil {
			f.client, f.err = newClient(&f.Config, f.timing)
		}
	})
	return f.err
}

// Fetch downloads, verifies, checks and places m.File in m.Dir, or
// fails leaving nothing but temporary names.
func (f *Fetcher) Fetch(ctx context.Context, root abslots.FS, m abslots.Missing) error {
	if err := f.setup(); err != nil {
		return err
	}
	r, ok := root.(rootFS)
	if !ok {
		return fmt.Errorf("fetch: root %T cannot be written by descriptor", root)
	}
	name := strings.TrimSuffix(path.Base(m.Link), ".raw")
	if !discover.ImageNameIsValid(name) || !discover.ImageNameIsValid(m.File) || !path.IsAbs(m.Dir) {
		return fmt.Errorf("fetch: refusing image %q / file %q / dir %q", name, m.File, m.Dir)
	}
	host, err := release.LoadHost(func(p string) (*os.File, error) { return r.Open(p, unix.O_RDONLY, 0) }, "")
	if err != nil {
		return err
	}
	t := f.Config.targetFor(host, m.Version)
	keyPEM, key, err := f.readKey(r)
	if err != nil {
		return err
	}
	src, dev := f.Config.source(keyPEM)
	u, err := f.Config.URL(src, f.Cmdline, t, name)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	if dev {
		f.Log.Noticef("fetch: %s is the developer key: using the developer server", f.Config.Key)
	}
	if f.Network != nil {
		f.netOnce.Do(func() {
			op := f.Log.Op("start the network for the download (%s)", strings.Join(NetworkUnits, ", "))
			if op.Finish(f.Network(ctx)) != nil {
				f.Log.Warnf("fetch: network start failed; trying the download anyway")
			}
		})
	}
	ctx, cancel := context.WithTimeout(ctx, f.timing.Deadline)
	defer cancel()
	op := f.Log.Op("create directory %s (if missing)", m.Dir)
	if err := op.Finish(r.MkdirAll(m.Dir, 0o755)); err != nil {
		return err
	}
	return f.place(ctx, r, m, name, u, key, host, t)
}

// readKey reads and parses the trusted key inside the root.
func (f *Fetcher) readKey(r rootFS) ([]byte, *rsa.PublicKey, error) {
	kf, err := r.Open(f.Config.Key, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch: trusted key: %w", err)
	}
	defer kf.Close()
	b, err := io.ReadAll(io.LimitReader(kf, 64<<10))
	if err != nil {
		return nil, nil, fmt.Errorf("fetch: trusted key %s: %w", f.Config.Key, err)
	}
	k, err := payload.ReadPublicKey(strings.NewReader(string(b)), f.Config.Key)
	return b, k, err
}

// place runs download, extraction, check and commit for one image.
func (f *Fetcher) place(ctx context.Context, r rootFS, m abslots.Missing, name, u string, key *rsa.PublicKey, host release.Host, t Target) error {
	dst := path.Join(m.Dir, m.File)
	lim := payload.Limits{MaxImage: f.Config.MaxImageMiB << 20}
	pp, err := r.CreatePending(dst + ".payload")
	if err != nil {
		return err
	}
	defer pp.Abort()
	op := f.Log.Op("download %s into %s and verify its signature", u, pp.TempPath())
	v, err := f.download(ctx, u, pp.File, key, lim)
	if op.Finish(err) != nil {
		return fmt.Errorf("fetch %s from %s: %w", name, u, err)
	}
	ip, err := r.CreatePending(dst)
	if err != nil {
		return err
	}
	defer ip.Abort()
	op = f.Log.Op("extract the image of %s into %s", pp.TempPath(), ip.TempPath())
	err = payload.Extract(v, pp.File, ip.File)
	if op.Finish(err) != nil {
		return fmt.Errorf("fetch %s from %s: %w", name, u, err)
	}
	pp.Abort()
	op = f.Log.Op("check %s as image %s for %s %s", ip.TempPath(), name, t.ID, t.VersionID)
	err = f.check(r.Path(), ip.TempPath(), name, host, t)
	if op.Finish(err) != nil {
		return fmt.Errorf("fetch %s from %s: %w", name, u, err)
	}
	op = f.Log.Op("place %s as %s", ip.TempPath(), dst)
	return op.Finish(ip.Commit(0o644))
}

// download GETs u into w (truncated before each attempt) through
// payload.Receive, with retries for transient failures.
func (f *Fetcher) download(ctx context.Context, u string, w *os.File, key *rsa.PublicKey, lim payload.Limits) (*payload.Verified, error) {
	maxLen := int64(lim.MaxImage+lim.MaxImage/8) + payload.DefaultMaxManifest + payload.DefaultMaxSignatures + payload.HeaderSize
	var v *payload.Verified
	err := retry(ctx, f.Config.Attempts, f.timing.RetryDelay, f.Log.Warnf, func() error {
		if err := w.Truncate(0); err != nil {
			return permanentError{err}
		}
		if _, err := w.Seek(0, io.SeekStart); err != nil {
			return permanentError{err}
		}
		return get(ctx, f.client, u, f.timing, maxLen, func(body io.Reader) error {
			var err error
			v, err = payload.Receive(body, w, []*rsa.PublicKey{key}, lim)
			return classify(err)
		})
	})
	return v, err
}

// classify marks payload errors permanent unless the transfer broke off
// (a cut connection, a stall), which another attempt may fix.
func classify(err error) error {
	var pe *payload.Error
	var ne net.Error
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) || errors.Is(err, context.Canceled) {
		return err
	}
	return permanentError{err}
}

// check runs the engine's check (or f.Check) and matchRelease.
func (f *Fetcher) check(rootPath, p, name string, host release.Host, t Target) error {
	h := hostFor(host, t)
	chk := f.Check
	if chk == nil {
		chk = f.engineCheck
	}
	fields, err := chk(rootPath, p, name, h)
	if err != nil {
		return err
	}
	return matchRelease(fields, t, p)
}

// engineCheck opens the image with the extension engine as a sysext
// merge would.
func (f *Fetcher) engineCheck(rootPath, p, name string, host release.Host) (map[string]string, error) {
	o := extension.Options{Root: rootPath, Class: config.Sysext, Getenv: f.Getenv, Log: f.Log, NoReload: true}
	if f.ImagePolicy != "" {
		pol, err := image.ParsePolicy(f.ImagePolicy)
		if err != nil {
			return nil, err
		}
		o.ImagePolicy = pol
	}
	return extension.CheckImageFile(o, p, name, &host)
}

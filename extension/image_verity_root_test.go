package extension

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// withBackend replaces the image backend for one test.
func withBackend(t *testing.T, b imageBackend) {
	t.Helper()
	old := backend
	backend = b
	t.Cleanup(func() { backend = old })
}

// fakeVerity dissects every raw image as a verity image whose data is the
// whole file (a bare erofs) with the given root hash.
func fakeVerity(hash []byte) func(*engine, discover.Image, *os.File) (*image.Dissected, *os.File, error) {
	return func(e *engine, img discover.Image, f *os.File) (*image.Dissected, *os.File, error) {
		st, err := f.Stat()
		if err != nil {
			return nil, nil, err
		}
		return &image.Dissected{
			Data: image.Partition{Designator: "root", Region: image.Region{Size: uint64(st.Size())}, FSType: "erofs"},
			Verity: &image.Verity{
				Superblock: image.VeritySuperblock{HashType: 1, Algorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 1},
				RootHash:   hash, HashPath: "x.verity",
			},
		}, nil, nil
	}
}

// On this host there is no device-mapper: a verity image is refused with
// an error naming the image and the rule, and never mounted without
// verity; the merge goes on with the other images.
func TestVerityImageRefusedWithoutDeviceMapper(t *testing.T) {
	if _, err := os.Stat("/dev/mapper/control"); err == nil {
		t.Skip("this kernel has device-mapper; the QEMU verity scenarios cover it")
	}
	r := testRoot(t, "symlink")
	rawImage(t, r, "erofs", "ver")
	dirImage(t, r, "plain", "ID=_any\n")
	hash := bytes.Repeat([]byte{0xab}, 32)
	var setupErr error
	withBackend(t, imageBackend{
		dissect: fakeVerity(hash),
		setup: func(f *os.File, d *image.Dissected, o image.SetupOptions) (*image.Device, error) {
			d.Verity.HashPath = "" // the real set-up, which opens device-mapper first
			dev, err := image.SetupVerity(f, d, o)
			setupErr = err
			return dev, err
		},
		verify: verifySignature,
	})
	var log bytes.Buffer
	o := opts(r, "yes")
	o.Log = oplog.New(oplog.WriterSink{W: &log})
	res, err := Merge(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer Unmerge(context.Background(), opts(r, "yes"))
	if setupErr == nil || !strings.Contains(setupErr.Error(), "cannot initialize device-mapper") {
		t.Errorf("set-up error %v, want systemd's 'cannot initialize device-mapper'", setupErr)
	}
	if strings.Join(res.Merged, ",") != "plain" {
		t.Errorf("merged %q, want only the directory image", res.Merged)
	}
	var reason string
	for _, s := range res.Skipped {
		if s.Name == "ver" {
			reason = s.Reason
		}
	}
	for _, want := range []string{"ver", "dm-verity set-up failed", "never mounted without it", "device-mapper"} {
		if !strings.Contains(reason+" "+log.String(), want) {
			t.Errorf("refusal does not say %q: reason %q", want, reason)
		}
	}
	if _, err := os.Stat(filepath.Join(r, "etc/ver.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the verity image's file is visible in /etc (mounted unverified): %v", err)
	}
	if origin, _ := readMeta(t, r, "origin"); strings.Contains(origin, "\"ver\"") {
		t.Errorf("origin records the refused image: %s", origin)
	}
}

// Without the dissection wired in, an image whose root hash comes from a
// sidecar is refused, not mounted unverified (the state before issue 7:
// it was mounted from its loop device and recorded with its root hash).
func TestVeritySidecarImageNeverMountedUnverified(t *testing.T) {
	r := testRoot(t, "symlink")
	img := rawImage(t, r, "squashfs", "side")
	write(t, strings.TrimSuffix(img, ".raw")+".roothash", strings.Repeat("cd", 32)+"\n")
	res, err := Merge(context.Background(), opts(r, "yes"))
	if err == nil {
		defer Unmerge(context.Background(), opts(r, "yes"))
	}
	if _, serr := os.Stat(filepath.Join(r, "etc/side.conf")); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("image with a .roothash sidecar mounted without dm-verity (merge %v, %v)", res, err)
	}
	found := false
	if res != nil {
		for _, s := range res.Skipped {
			found = found || (s.Name == "side" && strings.Contains(s.Reason, "verity"))
		}
	}
	if !found && (err == nil || !strings.Contains(err.Error(), "verity")) {
		t.Errorf("no refusal naming verity: res %+v err %v", res, err)
	}
}

// status and list show the root hash of verity images (our addition to
// systemd's columns, only when there is one).
func TestStatusListShowVerity(t *testing.T) {
	origin := []byte(`{"extensions":{"00-default":{"path":"/usr/lib/confexts/00-default.raw","verityHash":"` + strings.Repeat("ab", 32) + `"},"10-plain":{"path":"/x","onMountId":1,"inode":2,"crtime":0,"mtime":0}}}`)
	v := originVerity(origin)
	if len(v) != 1 || v["00-default"] != strings.Repeat("ab", 32) {
		t.Fatalf("originVerity %v", v)
	}
	rows := []HierarchyStatus{{Hierarchy: "/etc", Merged: true, Extensions: []string{"00-default", "10-plain"}, Since: 1, Verity: v}}
	var tb, js bytes.Buffer
	must(t, WriteStatus(&tb, rows, ""))
	must(t, WriteStatus(&js, rows, "short"))
	if !strings.Contains(tb.String(), "00-default (dm-verity abababababababab…)") || strings.Contains(tb.String(), "10-plain (") {
		t.Errorf("status table:\n%s", tb.String())
	}
	if !strings.Contains(js.String(), `"verityHashes":{"00-default":"`+strings.Repeat("ab", 32)+`"}`) {
		t.Errorf("status json: %s", js.String())
	}
	var lt, lj bytes.Buffer
	imgs := []ImageInfo{{Name: "a", Type: "raw", Path: "/a.raw", VerityHash: "cd"}, {Name: "b", Type: "directory", Path: "/b"}}
	must(t, WriteList(&lt, imgs, ""))
	must(t, WriteList(&lj, imgs, "short"))
	if !strings.Contains(lt.String(), "VERITY") || !strings.Contains(lj.String(), `"verityHash":"cd"`) || strings.Count(lj.String(), "verityHash") != 1 {
		t.Errorf("list:\n%s\n%s", lt.String(), lj.String())
	}
	var plain bytes.Buffer
	must(t, WriteList(&plain, imgs[1:], ""))
	if strings.Contains(plain.String(), "VERITY") {
		t.Errorf("VERITY column without verity images:\n%s", plain.String())
	}
}

// The image policy decides before anything is set up: under "signed" an
// unsigned verity image and a plain squashfs are refused naming the
// policy.
func TestImagePolicyRefusals(t *testing.T) {
	r := testRoot(t, "symlink")
	rawImage(t, r, "squashfs", "plain")
	dirImage(t, r, "dir", "ID=_any\n")
	setups := 0
	withBackend(t, imageBackend{
		dissect: func(e *engine, img discover.Image, f *os.File) (*image.Dissected, *os.File, error) {
			if img.Name == "plain" {
				return dissectImage(e, img, f)
			}
			return fakeVerity(bytes.Repeat([]byte{1}, 32))(e, img, f)
		},
		setup: func(*os.File, *image.Dissected, image.SetupOptions) (*image.Device, error) {
			setups++
			return nil, errors.New("not reached")
		},
		verify: verifySignature,
	})
	rawImage(t, r, "erofs", "unsignedverity")
	o := opts(r, "yes")
	pol, err := image.ParsePolicy("root=signed+absent")
	must(t, err)
	o.ImagePolicy = pol
	res, err := Merge(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer Unmerge(context.Background(), opts(r, "yes"))
	if setups != 0 {
		t.Errorf("%d set-ups attempted for images the policy refuses", setups)
	}
	reasons := map[string]string{}
	for _, s := range res.Skipped {
		reasons[s.Name] = s.Reason
	}
	for _, n := range []string{"plain", "unsignedverity"} {
		if !strings.Contains(reasons[n], "root=signed+absent") || !strings.Contains(reasons[n], "policy") {
			t.Errorf("%s: reason %q does not name the policy", n, reasons[n])
		}
	}
	if strings.Join(res.Merged, ",") != "dir" {
		t.Errorf("merged %q", res.Merged)
	}
}

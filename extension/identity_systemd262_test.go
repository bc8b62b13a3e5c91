package extension

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
	"github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

// TestIdentityMatchesSystemd262 is a differential test of this package's
// pieces alone: the real systemd-confext 262 merges a root, and the origin
// record we compute for the same root with Discover + ImageIdentity (no
// mounts) must be sd_json_variant_equal to the one systemd wrote. The root
// holds a directory, a squashfs and an erofs image, a versioned ".v"
// directory and a symlinked directory image, on a loop-mounted ext4 and on
// tmpfs (whose file handles are 12 bytes).
func TestIdentityMatchesSystemd262(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs", "mkfs.erofs", "mkfs.ext4")
	chroot := systemd262.ChrootDir()
	if _, err := os.Stat(filepath.Join(chroot, "usr/bin/systemd-confext")); err != nil {
		testutil.Gate(t, "systemd 262 chroot at %s (make systemd262-root): %v", chroot, err)
	}
	e, err := systemd262.Setup(chroot)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ext4", func(t *testing.T) { identityVsSystemd(t, e, testutil.LoopFS(t, 64*1024, "ext4")) })
	t.Run("tmpfs", func(t *testing.T) { identityVsSystemd(t, e, "") })
}

func identityVsSystemd(t *testing.T, e *systemd262.Env, fs string) {
	r, cleanup, err := e.NewRoot(fs)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	f := systemd262.Fixture{Layout: systemd262.LayoutSymlink, Images: systemd262.StandardImages()}
	if err := f.Build(r.Host); err != nil {
		t.Fatal(err)
	}
	b1WriteTree(t, r.Host, map[string]string{
		"var/lib/confexts/dv.v/dv_1/etc/extension-release.d/extension-release.dv":    "ID=_any\n",
		"var/lib/confexts/dv.v/dv_1/etc/dv.conf":                                     "1\n",
		"var/lib/confexts/dv.v/dv_1.10/etc/extension-release.d/extension-release.dv": "ID=_any\n",
		"var/lib/confexts/dv.v/dv_1.10/etc/dv.conf":                                  "10\n",
		"var/lib/confexts/dv.v/dv_1.9/etc/extension-release.d/extension-release.dv":  "ID=_any\n",
		"srv/lnkimg/etc/extension-release.d/extension-release.lnk":                   "ID=_any\n",
		"srv/lnkimg/etc/lnk.conf":                                                    "l\n",
		"run/confexts/lnk":                                                           "->/srv/lnkimg",
	})

	res, err := e.Confext(nil, "--root="+r.In, "--mutable=yes", "merge")
	if err != nil {
		t.Fatalf("systemd-confext merge: %v\n%s", err, res)
	}
	defer e.Confext(nil, "--root="+r.In, "unmerge")
	data, err := os.ReadFile(filepath.Join(r.Host, "etc/.systemd-confext/origin"))
	if err != nil {
		t.Fatalf("systemd wrote no origin: %v\n%s", err, res)
	}
	sdDoc, err := ParseOrigin(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	sd, err := sdDoc.Origin()
	if err != nil {
		t.Fatal(err)
	}

	root, err := rootfs.Open(r.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	imgs, err := Discover(root, Confext, false)
	if err != nil {
		t.Fatal(err)
	}
	accepted := map[string]bool{}
	for _, x := range sd.Extensions {
		accepted[x.Name] = true
	}
	ours := Origin{Mode: sd.Mode, MutableDirs: sd.MutableDirs, MountOptions: sd.MountOptions}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name)
		if !accepted[img.Name] {
			continue
		}
		id, err := ImageIdentity(root, img, IdentityOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ours.Extensions = append(ours.Extensions, id)
	}
	want := []string{"dir1", "dv", "er1", "lnk", "sq1"}
	var got []string
	for n := range accepted {
		got = append(got, n)
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("systemd accepted %v, want %v (merge output:\n%s)", got, want, res)
	}
	if !Equal(ours.Document(), sdDoc) {
		t.Errorf("our origin differs from systemd's (discovered %v)\nours:\n%s\nsystemd:\n%s", names, ours.MarshalSystemd(), data)
	}
	// Control: the comparison notices a one-microsecond difference.
	if len(ours.Extensions) > 0 {
		bad := ours
		bad.Extensions = append([]OriginExtension(nil), ours.Extensions...)
		bad.Extensions[0].Crtime++
		if Equal(bad.Document(), sdDoc) {
			t.Error("control: a changed crtime still compares equal")
		}
	}
	for _, x := range ours.Extensions {
		if x.Name == "dv" && x.Path != "/var/lib/confexts/dv.v/dv_1.10" {
			t.Errorf("dv picked %s", x.Path)
		}
	}
}

package record

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/extension/discover"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/release"
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
	testutil.WriteTree(t, r.Host, map[string]string{
		"var/lib/confexts/dv.v/dv_1/etc/extension-release.d/extension-release.dv":    "ID=_any\n",
		"var/lib/confexts/dv.v/dv_1/etc/dv.conf":                                     "1\n",
		"var/lib/confexts/dv.v/dv_1.10/etc/extension-release.d/extension-release.dv": "ID=_any\n",
		"var/lib/confexts/dv.v/dv_1.10/etc/dv.conf":                                  "10\n",
		"var/lib/confexts/dv.v/dv_1.9/etc/extension-release.d/extension-release.dv":  "ID=_any\n",
		"srv/lnkimg/etc/extension-release.d/extension-release.lnk":                   "ID=_any\n",
		"srv/lnkimg/etc/lnk.conf":                                                    "l\n",
		"run/confexts/lnk":                                                           "->/srv/lnkimg",
	})
	// Validation variants (directories: systemd only skips a directory
	// whose release data does not fit). Host: ID=testos VERSION_ID=1.0.
	rel := "/etc/extension-release.d/extension-release."
	for name, content := range map[string]string{
		"v_arch": "ID=_any\nARCHITECTURE=arm64\n", "v_archok": "ID=_any\nARCHITECTURE=" + config.Confext.ReleaseOptions(false).Arch + "\n",
		"v_idmis": "ID=other\nVERSION_ID=1.0\n", "v_vermis": "ID=testos\nVERSION_ID=2.0\n", "v_nover": "ID=testos\n",
		"v_scope": "ID=_any\nCONFEXT_SCOPE=initrd\n", "v_scopeok": "ID=_any\nCONFEXT_SCOPE=\"initrd system\"\n",
		"v_noid": "VERSION_ID=1.0\n", "v_sysextlevel": "ID=testos\nSYSEXT_LEVEL=1\n",
		"v_quoted": "this is not valid\nID=\"testos\"\nVERSION_ID='1.0'\n",
	} {
		testutil.WriteTree(t, r.Host, map[string]string{"var/lib/confexts/" + name + rel + name: content})
	}
	testutil.WriteTree(t, r.Host, map[string]string{
		"var/lib/confexts/v_norel/etc/x":          "1",
		"var/lib/confexts/fb_1.2" + rel + "fb":    "ID=_any\n",
		"var/lib/confexts/v_other" + rel + "zz":   "ID=_any\n",
		"var/lib/confexts/v_strict0" + rel + "zz": "ID=_any\n",
	})
	setXattr(t, filepath.Join(r.Host, "var/lib/confexts/v_strict0"+rel+"zz"), "0")

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
	imgs, err := discover.Discover(root, config.Confext, false)
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
	// Our acceptance of the directory images, by release file + Validate.
	host, err := discover.LoadHostRelease(root, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs {
		if img.Type != discover.ImageDirectory {
			continue
		}
		tree, err := root.Open(img.Path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		ok := false
		reason := ""
		if rf, err := discover.ReadReleaseFile(tree, config.Confext, img.Name, false); err == nil {
			ok, reason, err = release.Validate(rf.Fields, host, config.Confext.ReleaseOptions(false))
			if err != nil {
				t.Fatal(err)
			}
		} else {
			reason = err.Error()
		}
		tree.Close()
		if ok != accepted[img.Name] {
			t.Errorf("image %s: we accept=%v (%s), systemd accept=%v", img.Name, ok, reason, accepted[img.Name])
		}
	}
	want := []string{"dir1", "dv", "er1", "fb_1.2", "lnk", "sq1", "v_archok", "v_quoted", "v_scopeok", "v_strict0"}
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
	// The "confexts" file lists the accepted names in our Discover order.
	var order []string
	for _, x := range ours.Extensions {
		order = append(order, x.Name)
	}
	if cf, err := os.ReadFile(filepath.Join(r.Host, "etc/.systemd-confext/confexts")); err != nil || string(cf) != strings.Join(order, "\n")+"\n" {
		t.Errorf("confexts file %q (%v), our order %v", cf, err, order)
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

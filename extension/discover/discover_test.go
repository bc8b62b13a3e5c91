package discover

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/config"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil/roottest"
)

func imageSummary(imgs []Image) string {
	var s []string
	for _, i := range imgs {
		s = append(s, i.Name+"="+i.Type.String()+":"+i.Path)
	}
	return strings.Join(s, " ")
}

func TestDiscoverConfext(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "evil.raw"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.WriteTree(t, dir, map[string]string{
		// /run/confexts has precedence over later search paths.
		"run/confexts/dup/":            "",
		"var/lib/confexts/dup.raw":     "",
		"usr/lib/confexts/dup.confext": "->/nothing",
		// Suffixes: .raw, .confext.raw, .confext dir; another class's suffix stays.
		"var/lib/confexts/plain.raw":                "",
		"var/lib/confexts/cls.confext.raw":          "",
		"var/lib/confexts/other.sysext.raw":         "",
		"usr/local/lib/confexts/tree.confext/etc/x": "1",
		"usr/lib/confexts/a10/":                     "",
		"usr/lib/confexts/a9/":                      "",
		// Versioned directories.
		"var/lib/confexts/app.raw.v/app_1.raw":               "",
		"var/lib/confexts/app.raw.v/app_2.raw":               "",
		"var/lib/confexts/app.raw.v/app_3~rc1.raw":           "",
		"var/lib/confexts/app.raw.v/other_9.raw":             "",
		"var/lib/confexts/dv.v/dv_1/":                        "",
		"var/lib/confexts/dv.v/dv_1.5/":                      "",
		"var/lib/confexts/cv.confext.raw.v/cv_7.confext.raw": "",
		"var/lib/confexts/empty.raw.v/":                      "",
		"var/lib/confexts/wrongtype.raw.v/wrongtype_1.raw/":  "",
		// Symlinks resolve inside the root only.
		"images/inside.raw":       "",
		"run/confexts/in.raw":     "->../../../../../../images/inside.raw",
		"run/confexts/abs.raw":    "->/images/inside.raw",
		"run/confexts/escape.raw": "->" + filepath.Join(outside, "evil.raw"),
		"run/confexts/notraw.raw": "->/images/thing.img",
		"images/thing.img":        "",
		// Skipped entries.
		"var/lib/confexts/.sysupdate.plain2.raw": "",
		"var/lib/confexts/.#tmp.raw":             "",
		"var/lib/confexts/readme.txt":            "",
		"var/lib/confexts/st.mstack/":            "",
	})
	if err := unix.Mkfifo(filepath.Join(dir, "var/lib/confexts/fifo.raw"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := roottest.Open(t, dir)
	imgs, skipped, err := DiscoverAll(root, config.Confext, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"a9=directory:/usr/lib/confexts/a9",
		"a10=directory:/usr/lib/confexts/a10",
		"abs=raw:/images/inside.raw",
		"app=raw:/var/lib/confexts/app.raw.v/app_2.raw",
		"cls=raw:/var/lib/confexts/cls.confext.raw",
		"cv=raw:/var/lib/confexts/cv.confext.raw.v/cv_7.confext.raw",
		"dup=directory:/run/confexts/dup",
		"dv=directory:/var/lib/confexts/dv.v/dv_1.5",
		"in=raw:/images/inside.raw",
		"other.sysext=raw:/var/lib/confexts/other.sysext.raw",
		"plain=raw:/var/lib/confexts/plain.raw",
		"tree=directory:/usr/local/lib/confexts/tree.confext",
	}
	if got := imageSummary(imgs); got != strings.Join(want, " ") {
		t.Errorf("images\n got %s\nwant %s", got, strings.Join(want, " "))
	}
	for _, i := range imgs {
		if i.Name == "app" && (i.Version != "2" || i.Entry != "app.raw.v" || i.SearchDir != "/var/lib/confexts" || i.FileName() != "app_2.raw") {
			t.Errorf("app image %+v", i)
		}
	}
	reasons := map[string]string{}
	for _, s := range skipped {
		reasons[filepath.Base(s.Path)] = s.Reason
	}
	for _, n := range []string{"escape.raw", "notraw.raw", ".sysupdate.plain2.raw", ".#tmp.raw", "readme.txt", "st.mstack", "fifo.raw", "empty.raw.v", "wrongtype_1.raw", "dup.raw", "dup.confext"} {
		if _, ok := reasons[n]; !ok {
			t.Errorf("%s not reported as skipped (skips: %v)", n, reasons)
		}
	}
}

func TestDiscoverInitrdAndSysext(t *testing.T) {
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{
		"etc/initrd-release":              "",
		"usr/lib/confexts/vendor/":        "",
		"run/confexts/rc/":                "",
		".extra/confext/stub.raw":         "",
		".extra/global_confext/g.raw":     "",
		"etc/extensions/s.raw":            "",
		"usr/lib/extensions/never.raw":    "",
		".extra/sysext/x.raw":             "",
		"var/lib/extensions/n.sysext.raw": "",
	})
	root := roottest.Open(t, dir)
	initrd, err := IsInitrd(root)
	if err != nil || !initrd {
		t.Fatalf("IsInitrd = %v %v", initrd, err)
	}
	imgs, err := Discover(root, config.Confext, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := imageSummary(imgs); got != "g=raw:/.extra/global_confext/g.raw rc=directory:/run/confexts/rc stub=raw:/.extra/confext/stub.raw" {
		t.Errorf("initrd confext: %s", got)
	}
	imgs, err = Discover(root, config.Confext, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := imageSummary(imgs); got != "rc=directory:/run/confexts/rc vendor=directory:/usr/lib/confexts/vendor" {
		t.Errorf("system confext: %s", got)
	}
	imgs, err = Discover(root, config.Sysext, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := imageSummary(imgs); got != "n=raw:/var/lib/extensions/n.sysext.raw s=raw:/etc/extensions/s.raw" {
		t.Errorf("sysext: %s", got)
	}
	if err := os.Remove(filepath.Join(dir, "etc/initrd-release")); err != nil {
		t.Fatal(err)
	}
	if initrd, _ := IsInitrd(root); initrd {
		t.Error("IsInitrd after removal")
	}
}

func TestDiscoverBlockDevice(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	testutil.WriteTree(t, dir, map[string]string{"run/confexts/": ""})
	// A block device node (loop0's numbers; it is never opened).
	if err := unix.Mknod(filepath.Join(dir, "run/confexts/blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))); err != nil {
		t.Fatal(err)
	}
	imgs, err := Discover(roottest.Open(t, dir), config.Confext, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := imageSummary(imgs); got != "blk=block:/run/confexts/blk" {
		t.Errorf("got %s", got)
	}
}

package fetch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// sysextImage builds a squashfs sysext named name whose extension-release
// says id, versionID and arch.
func sysextImage(t *testing.T, name, id, versionID, arch string) []byte {
	t.Helper()
	src := t.TempDir()
	rel := "ID=" + id + "\nVERSION_ID=" + versionID + "\n"
	if arch != "" {
		rel += "ARCHITECTURE=" + arch + "\n"
	}
	testutil.WriteTree(t, src, map[string]string{
		"usr/lib/extension-release.d/extension-release." + name: rel,
		"usr/share/" + name + "/payload":                        strings.Repeat("data ", 100000),
	})
	out := filepath.Join(t.TempDir(), name+".raw")
	testutil.MakeSquashfs(t, src, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFetchRealImageRoot: the downloaded image goes through the extension
// engine like any image on disk (loop device, dissection, image policy,
// extension-release under the link's name against the target version):
// a good image is placed; an old version served under the new URL, an
// image published under another name and a payload that holds no file
// system are refused and leave nothing behind.
func TestFetchRealImageRoot(t *testing.T) {
	testutil.RequireRoot(t)
	a := payloadtest.KeyA()
	cases := []struct {
		name, want string
		img        func() []byte
	}{
		{"good", "", func() []byte { return sysextImage(t, "oem-test", "flatcar", testVersion, arch) }},
		{"old version under the new URL", "does not match", func() []byte { return sysextImage(t, "oem-test", "flatcar", oldVersion, arch) }},
		{"another image's name", "extension-release", func() []byte { return sysextImage(t, "oem-other", "flatcar", testVersion, arch) }},
		{"no file system", "unrecognized image", func() []byte { return []byte(strings.Repeat("x", 1<<20)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			img := tc.img()
			e.serve("oem-test", buildPayload(t, img, a))
			_, m, err := e.fetchWith(nil)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("%v\n%s", err, e.log.String())
				}
				got, rerr := os.ReadFile(filepath.Join(e.root, m.Dir, m.File))
				if rerr != nil || string(got) != string(img) {
					t.Fatalf("placed image differs (%v)", rerr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q\n%s", err, tc.want, e.log.String())
			}
			if fs := e.files("etc"); len(fs) != 0 {
				t.Fatalf("files left after a refused image: %v", fs)
			}
			t.Logf("refused: %v", err)
		})
	}
}

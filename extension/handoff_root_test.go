package extension

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// The pre stage's merge adopts the images its dedup opened (OpenStack
// with a Handoff) only while they are what the dedup saw: these open the
// stack, change the root between the stack and the merge, and read what
// the merge shows.

// handoffMerge opens r's confext stack with h, closes it (handing the
// images over), runs change, then merges with h; it returns the merge's
// log.
func handoffMerge(t *testing.T, r string, change func()) string {
	t.Helper()
	h := &Handoff{}
	defer h.Close()
	o := opts(r, "auto")
	o.Handoff = h
	st, err := OpenStack(o)
	must(t, err)
	st.Close()
	change()
	var buf bytes.Buffer
	o.Log = oplog.New(oplog.WriterSink{W: &buf})
	if _, err := Merge(context.Background(), o); err != nil {
		t.Fatalf("merge: %v\n%s", err, buf.String())
	}
	return buf.String()
}

// requireEtc fails unless r's merged /etc reads want at rel ("" = absent).
func requireEtc(t *testing.T, r, rel, want, log string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r, "etc", rel))
	if want == "" {
		if err == nil {
			t.Fatalf("/etc/%s present (%q), want absent\n%s", rel, b, log)
		}
		return
	}
	if err != nil || string(b) != want {
		t.Fatalf("/etc/%s reads %q (%v), want %q\n%s", rel, b, err, want, log)
	}
}

// TestHandoffAdoptsUnchanged: unchanged images are taken over from the
// stack, not opened again, and show in the merge.
func TestHandoffAdoptsUnchanged(t *testing.T) {
	r := testRoot(t, "symlink")
	dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
	dirImage(t, r, "dir2", "ID=_any\n")
	log := handoffMerge(t, r, func() {})
	if !strings.Contains(log, "reused 2 image(s) opened by the prepare step") {
		t.Fatalf("the merge did not adopt the stack's images:\n%s", log)
	}
	requireEtc(t, r, "dir1.conf", "dir1\n", log)
	requireEtc(t, r, "dir2.conf", "dir2\n", log)
}

// TestHandoffNoticesChangedStack: a stack changed after the dedup looked
// at it (an image replaced, removed or added, the host release changed)
// is merged as it is at the merge, never as the dedup saw it.
func TestHandoffNoticesChangedStack(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, r string)
		want   map[string]string // /etc path -> content ("" = absent)
		log    string
	}{
		{"directory replaced", func(t *testing.T, r string) {
			d := filepath.Join(r, "var/lib/confexts")
			n := dirImage(t, r, "dir1.new", "ID=_any\n")
			write(t, filepath.Join(n, "etc/dir1.conf"), "new\n")
			must(t, os.Rename(filepath.Join(n, "etc/extension-release.d/extension-release.dir1.new"),
				filepath.Join(n, "etc/extension-release.d/extension-release.dir1")))
			must(t, os.Remove(filepath.Join(n, "etc/dir1.new.conf")))
			must(t, os.RemoveAll(filepath.Join(d, "dir1")))
			must(t, os.Rename(n, filepath.Join(d, "dir1")))
		}, map[string]string{"dir1.conf": "new\n", "dir2.conf": "dir2\n"}, "opened again, changed since: dir1"},
		{"directory removed", func(t *testing.T, r string) {
			must(t, os.RemoveAll(filepath.Join(r, "var/lib/confexts/dir1")))
		}, map[string]string{"dir1.conf": "", "dir2.conf": "dir2\n"}, "reused 1 image(s)"},
		{"directory added", func(t *testing.T, r string) {
			dirImage(t, r, "dir3", "ID=_any\n")
		}, map[string]string{"dir1.conf": "dir1\n", "dir3.conf": "dir3\n"}, "reused 2 image(s)"},
		{"host release changed", func(t *testing.T, r string) {
			write(t, filepath.Join(r, "etc/os-release"), "ID=testos\nVERSION_ID=2.0\n")
		}, map[string]string{"dir1.conf": "", "dir2.conf": "dir2\n"}, "not reused: the host release"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := testRoot(t, "symlink")
			dirImage(t, r, "dir1", "ID=testos\nVERSION_ID=1.0\n")
			dirImage(t, r, "dir2", "ID=_any\n")
			log := handoffMerge(t, r, func() { c.change(t, r) })
			for rel, want := range c.want {
				requireEtc(t, r, rel, want, log)
			}
			if !strings.Contains(log, c.log) {
				t.Fatalf("log lacks %q:\n%s", c.log, log)
			}
		})
	}
}

// TestHandoffNoticesReplacedRaw: a raw image replaced by another file
// between the stack and the merge (a new identity) is opened again.
func TestHandoffNoticesReplacedRaw(t *testing.T) {
	r := testRoot(t, "symlink")
	p := rawImage(t, r, "squashfs", "sq1")
	log := handoffMerge(t, r, func() {
		src := filepath.Join(t.TempDir(), "sq1")
		write(t, filepath.Join(src, "etc/extension-release.d/extension-release.sq1"), "ID=_any\n")
		write(t, filepath.Join(src, "etc/sq1.conf"), "replaced\n")
		tmp := p + ".tmp"
		testutil.MakeSquashfs(t, src, tmp)
		must(t, os.Rename(tmp, p))
	})
	requireEtc(t, r, "sq1.conf", "replaced\n", log)
	if !strings.Contains(log, "opened again, changed since: sq1") {
		t.Fatalf("log does not say the raw image was opened again:\n%s", log)
	}
}

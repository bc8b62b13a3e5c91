package fetch

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// TestPreUpdateFetchThenOfflineBoot: while version 3999 runs, the
// pre-update fetch for 4000 downloads the OEM image (no link changes);
// the first boot of 4000 then finds it, links it and asks the server for
// nothing, and succeeds with the server down.
func TestPreUpdateFetchThenOfflineBoot(t *testing.T) {
	e := newEnv(t)
	testutil.WriteTree(t, e.root, map[string]string{
		"usr/lib/os-release":         "ID=flatcar\nVERSION=" + oldVersion + "\nVERSION_ID=" + oldVersion + "\nFLATCAR_BOARD=" + testBoard + "\n",
		"oem/oem-release":            "ID=test\n",
		"oem/sysext/active-oem-test": "",
	})
	img := fakeImage("flatcar", testVersion, arch)
	e.serve("oem-test", buildPayload(t, img, payloadtest.KeyA()))
	var requests atomic.Int32
	serve := e.handler
	e.handler = func(w http.ResponseWriter, r *http.Request) { requests.Add(1); serve(w, r) }
	f := &Fetcher{Config: e.cfg, Cmdline: kcmdline.ParseString(""), Log: oplog.New(oplog.WriterSink{W: &e.log}), Check: fakeCheck}
	p, err := abslots.Fetch(context.Background(), abslots.Options{Root: e.root, Fetcher: f, OSVersion: testVersion, Log: f.Log})
	if err != nil {
		t.Fatalf("%v\n%s", err, e.log.String())
	}
	if len(p.Missing) != 0 || requests.Load() != 1 {
		t.Fatalf("after the pre-update fetch: missing %+v, %d requests", p.Missing, requests.Load())
	}
	placed := "/etc/flatcar/oem-sysext/oem-test-" + testVersion + ".raw"
	if _, err := os.Lstat(filepath.Join(e.root, "etc/extensions/oem-test.raw")); err == nil {
		t.Fatal("the pre-update fetch changed a link")
	}
	// The update is applied: the next boot runs 4000, the server is gone.
	os.Remove(filepath.Join(e.root, "usr/lib/os-release"))
	testutil.WriteTree(t, e.root, map[string]string{"usr/lib/os-release": "ID=flatcar\nVERSION=" + testVersion + "\nVERSION_ID=" + testVersion + "\nFLATCAR_BOARD=" + testBoard + "\n"})
	e.srv.Close()
	p, err = abslots.Run(context.Background(), abslots.Options{Root: e.root, Fetcher: f, Cmdline: strings.NewReader(""), Log: f.Log})
	if err != nil {
		t.Fatalf("boot after the update: %v\n%s", err, e.log.String())
	}
	if len(p.Missing) != 0 || requests.Load() != 1 {
		t.Fatalf("boot after the update: missing %+v, %d requests", p.Missing, requests.Load())
	}
	target, err := os.Readlink(filepath.Join(e.root, "etc/extensions/oem-test.raw"))
	if err != nil || (target != placed && target != "/oem/sysext/oem-test-"+testVersion+".raw") {
		t.Fatalf("link %q (%v)", target, err)
	}
}

package fetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

func TestMain(m *testing.M) { testutil.MainInMountNS(m) }

const (
	testVersion = "4000.1.0"
	oldVersion  = "3999.0.0"
	testBoard   = "amd64-usr"
)

// env is one fetch test: a target root with os-release and the trusted
// key, and a loopback HTTPS server whose handler the test sets.
type env struct {
	t       *testing.T
	root    string
	srv     *httptest.Server
	handler http.HandlerFunc
	cfg     Config
	log     bytes.Buffer
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, root: t.TempDir()}
	testutil.WriteTree(t, e.root, map[string]string{
		"usr/lib/os-release": "ID=flatcar\nVERSION=" + testVersion + "\nVERSION_ID=" + testVersion + "\nFLATCAR_BOARD=" + testBoard + "\n",
		"usr/share/update_engine/update-payload-key.pub.pem": string(payloadtest.PublicPEM(payloadtest.KeyA())),
	})
	e.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.handler(w, r) }))
	t.Cleanup(e.srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cfg = DefaultConfig()
	e.cfg.BaseURL = e.srv.URL
	e.cfg.CABundle = ca
	e.cfg.RequestTimeout, e.cfg.Deadline, e.cfg.RetryDelay, e.cfg.Attempts = "2s", "10s", "10ms", 2
	return e
}

// serve makes the server answer the Flatcar path of name with body.
func (e *env) serve(name string, body []byte) {
	want := "/" + testBoard + "/" + testVersion + "/" + name + ".gz"
	e.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != want {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}
}

// fakeImage is a test "image": an extension-release as plain text,
// which fakeCheck reads back (the real engine check is in the root tier).
func fakeImage(id, versionID, arch string) []byte {
	s := "ID=" + id + "\nVERSION_ID=" + versionID + "\n"
	if arch != "" {
		s += "ARCHITECTURE=" + arch + "\n"
	}
	return []byte(s + strings.Repeat("#", 3<<20))
}

// fakeCheck parses the image file as an extension-release.
func fakeCheck(rootPath, p, name string, host release.Host) (map[string]string, error) {
	r, err := rootfs.Open(rootPath)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.Open(p, 0, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fields := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			fields[k] = v
		}
	}
	return fields, nil
}

func buildPayload(t *testing.T, img []byte, keys ...*rsa.PrivateKey) []byte {
	t.Helper()
	testutil.RequireTool(t, "bzip2")
	p, err := payloadtest.Build(img, payloadtest.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fetch runs one fetch of the OEM image "test" for testVersion, with
// fakeCheck.
func (e *env) fetch(cmdline string) (abslots.Missing, error) {
	f := &Fetcher{Config: e.cfg, Cmdline: kcmdline.ParseString(cmdline), Log: oplog.New(oplog.WriterSink{W: &e.log}), Check: fakeCheck}
	_, m, err := e.run(f)
	return m, err
}

// fetchWith is fetch with check (nil: the extension engine's).
func (e *env) fetchWith(check CheckFunc) (*Fetcher, abslots.Missing, error) {
	return e.run(&Fetcher{Config: e.cfg, Log: oplog.New(oplog.WriterSink{W: &e.log}), Check: check})
}

func (e *env) run(f *Fetcher) (*Fetcher, abslots.Missing, error) {
	r, err := rootfs.Open(e.root)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	m := abslots.Missing{Kind: "oem", Name: "test", File: "oem-test-" + testVersion + ".raw", Dir: "/etc/flatcar/oem-sysext",
		Link: "/etc/extensions/oem-test.raw", Version: testVersion, Essential: false}
	return f, m, f.Fetch(context.Background(), abslots.RootFS{Root: r}, m)
}

// files lists the regular files under dir of the root (relative names).
func (e *env) files(dir string) []string {
	var out []string
	filepath.Walk(filepath.Join(e.root, dir), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(e.root, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func mustHost(t *testing.T, s string) release.Host {
	t.Helper()
	f, err := release.Parse(strings.NewReader(s), "os-release")
	if err != nil {
		t.Fatal(err)
	}
	return release.HostFromFields(f)
}

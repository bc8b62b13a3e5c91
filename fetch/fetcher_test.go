package fetch

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/release"
)

var arch = release.UnameArchitecture()

func TestFetchGood(t *testing.T) {
	e := newEnv(t)
	img := fakeImage("flatcar", testVersion, arch)
	e.serve("oem-test", buildPayload(t, img, payloadtest.KeyB(), payloadtest.KeyA()))
	m, err := e.fetch("")
	if err != nil {
		t.Fatalf("%v\n%s", err, e.log.String())
	}
	got, err := os.ReadFile(filepath.Join(e.root, m.Dir, m.File))
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("placed image differs (%v)", err)
	}
	if fs := e.files("etc"); len(fs) != 1 {
		t.Fatalf("files left: %v", fs)
	}
	for _, want := range []string{"download " + e.srv.URL + "/amd64-usr/" + testVersion + "/oem-test.gz", "extract", "check", "place"} {
		if !strings.Contains(e.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, e.log.String())
		}
	}
}

// TestFetchKernelCmdlineServer: flatcar.release_file_server_url= replaces
// the configured base URL (here a dead one).
func TestFetchKernelCmdlineServer(t *testing.T) {
	e := newEnv(t)
	e.serve("oem-test", buildPayload(t, fakeImage("flatcar", testVersion, arch), payloadtest.KeyA()))
	srv := e.cfg.BaseURL
	e.cfg.BaseURL = "https://127.0.0.1:1"
	if _, err := e.fetch("flatcar.release_file_server_url=" + srv + "/"); err != nil {
		t.Fatalf("%v\n%s", err, e.log.String())
	}
}

// TestFetchDevKey: a trusted key whose MD5 is the configured developer
// key's switches to the developer server and path.
func TestFetchDevKey(t *testing.T) {
	e := newEnv(t)
	img := fakeImage("flatcar", testVersion, arch)
	body := buildPayload(t, img, payloadtest.KeyA())
	e.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/images/amd64/"+testVersion+"/flatcar_test_update-oem-test.gz" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}
	keyPEM := payloadtest.PublicPEM(payloadtest.KeyA())
	e.cfg.Dev.KeyMD5 = md5hex(keyPEM)
	e.cfg.Dev.BaseURL = e.srv.URL
	e.cfg.BaseURL = "https://127.0.0.1:1"
	if _, err := e.fetch(""); err != nil {
		t.Fatalf("%v\n%s", err, e.log.String())
	}
}

// TestFetchRefused: every bad answer fails the fetch with an error naming
// the rule, and leaves no file at all (no image, no temp).
func TestFetchRefused(t *testing.T) {
	good := fakeImage("flatcar", testVersion, arch)
	a, b := payloadtest.KeyA(), payloadtest.KeyB()
	pl := buildPayload(t, good, a)
	mlen := int(pl[19]) | int(pl[18])<<8
	flip := func(off int) []byte { p := bytes.Clone(pl); p[off] ^= 1; return p }
	body := func(p []byte) func(*env) { return func(e *env) { e.serve("oem-test", p) } }
	cases := []struct {
		name, want string
		setup      func(*env)
	}{
		{"wrong key", "none of 1 signatures verifies", body(buildPayload(t, good, b))},
		{"altered manifest", "payload", body(flip(20 + mlen - 5))},
		{"altered data", "signature", body(flip(20 + mlen + 100))},
		{"altered signature", "signature", body(flip(len(pl) - 3))},
		{"truncated", "truncated", body(pl[:len(pl)-100])},
		{"trailing bytes", "trailing bytes", body(append(bytes.Clone(pl), "extra"...))},
		{"oversize declared in the manifest", "configured maximum", func(e *env) { e.cfg.MaxImageMiB = 1; e.serve("oem-test", pl) }},
		{"oversize declared by Content-Length", "exceeds the largest payload", func(e *env) {
			e.cfg.MaxImageMiB = 1
			e.handler = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(4<<20))
				w.Write(make([]byte, 4<<20))
			}
		}},
		{"oversize actual (endless body)", "trailing bytes", func(e *env) {
			e.handler = func(w http.ResponseWriter, r *http.Request) {
				w.Write(pl)
				for i := 0; i < 1000; i++ {
					if _, err := w.Write(make([]byte, 64<<10)); err != nil {
						return
					}
				}
			}
		}},
		{"old version under the new URL", `VERSION_ID="` + oldVersion + `", the image was fetched for "` + testVersion + `"`, body(buildPayload(t, fakeImage("flatcar", oldVersion, arch), a))},
		{"other OS", `ID="fedora"`, body(buildPayload(t, fakeImage("fedora", testVersion, arch), a))},
		{"other architecture", `ARCHITECTURE="s390"`, body(buildPayload(t, fakeImage("flatcar", testVersion, "s390"), a))},
		{"404", "404 Not Found", func(e *env) { e.handler = http.NotFound }},
		{"server error retried", "503", func(e *env) {
			e.handler = func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) }
		}},
		{"stalled server", "no data received within the request timeout", func(e *env) {
			e.cfg.RequestTimeout = "300ms"
			e.handler = func(w http.ResponseWriter, r *http.Request) {
				w.Write(pl[:100])
				w.(http.Flusher).Flush()
				time.Sleep(2 * time.Second)
			}
		}},
		{"slow server past the deadline", "deadline", func(e *env) {
			e.cfg.Deadline, e.cfg.RequestTimeout = "1s", "500ms"
			e.handler = func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i < len(pl) && i < 100; i++ {
					if _, err := w.Write(pl[i : i+1]); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					time.Sleep(100 * time.Millisecond)
				}
			}
		}},
		{"server down", "connection refused", func(e *env) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			e.cfg.BaseURL = "https://" + l.Addr().String()
			l.Close()
		}},
		{"http refused", "scheme must be https", func(e *env) { e.cfg.BaseURL = "http://127.0.0.1:1" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.setup(e)
			start := time.Now()
			_, err := e.fetch("")
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q\n%s", err, tc.want, e.log.String())
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Fatalf("took %s", d)
			}
			if fs := e.files("etc"); len(fs) != 0 {
				t.Fatalf("files left after a refused fetch: %v", fs)
			}
			t.Logf("refused in %s: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

func md5hex(b []byte) string { return md5sumHex(b) }

package qemu

import (
	"crypto/rsa"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
)

// fetchIP is the guest-side address of the payload server: a guestfwd
// rule of the restricted user network joins it to the test's server on
// the host's loopback, and the guest can reach nothing else.
const fetchIP = "10.0.2.100"

// fetchServer is the test's HTTPS payload server on the host's loopback,
// serving Flatcar's paths ({BOARD}/{VERSION}/{NAME}.gz).
type fetchServer struct {
	ln       net.Listener
	srv      *http.Server
	mu       sync.Mutex
	payloads map[string][]byte
	requests []string
}

func newFetchServer(t *testing.T, ca *FetchCA) *fetchServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fetchServer{ln: ln, payloads: map[string][]byte{}}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.requests = append(s.requests, r.URL.Path)
			b, ok := s.payloads[r.URL.Path]
			s.mu.Unlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Write(b)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(t, fetchIP)}},
	}
	go s.srv.ServeTLS(ln, "", "")
	t.Cleanup(s.stop)
	return s
}

// stop closes the listener: the guest's connections are then refused.
func (s *fetchServer) stop() { s.srv.Close() }

func (s *fetchServer) port() string { return s.ln.Addr().(*net.TCPAddr).AddrPort().String() }

func (s *fetchServer) served() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// servePayload builds ext's squashfs image, makes it a payload signed
// with payloadtest's key A, and serves it under Flatcar's path.
func (s *fetchServer) servePayload(t *testing.T, ext Ext, version string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), ext.Name+".raw")
	ext.Build(t, img)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	p, err := payloadtest.Build(b, payloadtest.Options{Keys: []*rsa.PrivateKey{payloadtest.KeyA()}})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.payloads["/amd64-usr/"+version+"/"+ext.Name+".gz"] = p
	s.mu.Unlock()
}

// fetchedOEM is the OEM image the server carries for version: its
// extension-release names the OS and the version, as the fetcher
// requires of a downloaded image.
func fetchedOEM(version string) Ext {
	e := OEMSysext(version)
	e.Release = "ID=debian\nVERSION_ID=" + version + "\n"
	return e
}

// fetchBootToml points the fetcher at the test's payload key and keeps
// the server-down boots short; the server's address comes from the
// kernel command line (flatcar.release_file_server_url=), as with
// bootengine.
const fetchBootToml = `[fetch]
key = "/etc/extsr-test/payload-key.pem"
request_timeout = "20s"
deadline = "90s"
attempts = 6
retry_delay = "3s"
`

// fetchHook runs at the end of every boot's report. Boot 1 (slot A) runs
// the pre-update fetch for slot B's version in the booted system, which
// starts its own network; boot 2 (slot B) enables flatcar-bar, which no
// store holds (optional); boot 3 (slot B) removes slot A's OEM image
// (essential) from both stores (boot 2's OEM move put it on the root
// partition). It also reports networkd's journal of the boot.
const fetchHook = `#!/bin/sh
r() { printf 'EXTSR-RESULT %s=%s\n' "$1" "$2"; }
journalctl -b -o cat -u systemd-networkd.service --no-pager | grep -v '^-- No entries' | while IFS= read -r l; do r net_journal "$l"; done
v=$(. /usr/lib/os-release; echo "$VERSION_ID")
case "$v:$(cat /etc/extsr-test/step 2>/dev/null)" in
` + VersionA + `:)
	systemctl start systemd-networkd.service
	ext-setup-root fetch --os-version=` + VersionB + ` >/run/extsr-prefetch.log 2>&1
	r prefetch_rc $?
	while IFS= read -r l; do r prefetch_log "$l"; done </run/extsr-prefetch.log
	for f in /oem/sysext/* /etc/flatcar/oem-sysext/*; do [ -f "$f" ] && r prefetched "$f"; done
	echo 1 >/etc/extsr-test/step ;;
` + VersionB + `:1)
	echo bar >>/etc/flatcar/enabled-sysext.conf
	echo 2 >/etc/extsr-test/step ;;
` + VersionB + `:2)
	rm -f /oem/sysext/oem-` + OEMID + `-` + VersionA + `.raw /etc/flatcar/oem-sysext/oem-` + OEMID + `-` + VersionA + `.raw
	echo 3 >/etc/extsr-test/step ;;
esac
sync
`

// esrLines returns ext-setup-root's log lines of a boot.
func esrLines(r *Report) []string {
	return append(append(r.All("esr_log"), r.All("esr_unit")...), r.All("esr_kmsg")...)
}

func countContaining(lines []string, subs ...string) int {
	n := 0
	for _, l := range lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}

// TestQEMUFetch (issue 15 items 4 and 7): the network only when an image
// is missing, and the download from a payload server through QEMU's
// user network (restricted: the guest reaches the test's HTTPS server on
// the host's loopback through a guestfwd rule, nothing else).
//
//  1. Slot A with the OEM image missing: the initrd starts networkd,
//     downloads oem-test for 1000.0.0, verifies it, places and links
//     it; the OEM sysext merges and its service runs. In the booted
//     system `ext-setup-root fetch --os-version=1001.0.0` downloads
//     slot B's image ahead of the update.
//  2. Server stopped, slot B: its image is there; the initrd starts no
//     network unit and asks no server.
//  3. Server down, slot B with flatcar-bar enabled (optional) and missing:
//     one error line, the boot goes on.
//  4. Server down, slot A with its OEM image removed (essential): the
//     post stage fails and the boot ends in the emergency shell.
func TestQEMUFetch(t *testing.T) {
	in := RequireInputs(t)
	ca := TestFetchCA(t)
	srv := newFetchServer(t, ca)
	srv.servePayload(t, fetchedOEM(VersionA), VersionA)
	srv.servePayload(t, fetchedOEM(VersionB), VersionB)

	root := RootTree(t, in)
	oem := OEMTree(t)
	writeFile(t, oem, "sysext/active-oem-"+OEMID, "", 0o644)
	writeFile(t, root, "etc/ext-setup-root/boot.toml", fetchBootToml, 0o644)
	writeFile(t, root, "etc/extsr-test/payload-key.pem", string(payloadtest.PublicPEM(payloadtest.KeyA())), 0o644)
	// The booted system's fetch (boot 1's hook) uses its own CA bundle
	// and network configuration.
	writeFile(t, root, "etc/ssl/certs/ca-certificates.crt", string(ca.CertPEM), 0o644)
	writeFile(t, root, "etc/systemd/network/zz-default.network", "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n", 0o644)
	writeFile(t, root, "etc/extsr/check.d/50-fetch", fetchHook, 0o755)
	writeFile(t, root, "etc/flatcar/enabled-sysext.conf", "# test\n", 0o644)

	relay := filepath.Join(t.TempDir(), "fwdrelay")
	buildGuestTool(t, "./test/qemu/fwdrelay", relay)
	m := NewMachine(t, in, DiskSpec{USRA: VersionA, USRB: VersionB, Root: root, OEM: oem})
	// restrict=on: no packet of the guest leaves QEMU except through the
	// guestfwd rule, whose relay connects to the server's loopback port.
	m.NIC = "user,model=virtio-net-pci,restrict=on,guestfwd=tcp:" + fetchIP + ":443-cmd:" + relay + " " + srv.port()
	m.Timeout = 10 * time.Minute
	server := "flatcar.release_file_server_url=https://" + fetchIP

	oemLink := "oem-" + OEMID + ".raw"
	// The fetcher places an OEM image in the root partition's store
	// (Missing.Dir); the post stage's OEM move then puts the booted
	// version's image on the OEM partition (oem_test.go).
	imgA := "/oem/sysext/oem-" + OEMID + "-" + VersionA + ".raw"
	fileB := "oem-" + OEMID + "-" + VersionB + ".raw"
	storedB, movedB := "/etc/flatcar/oem-sysext/"+fileB, "/oem/sysext/"+fileB
	netStart := "start the network for the download"

	t.Log("boot 1: slot A, OEM image missing, server up")
	rep := m.Boot("A", server)
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	RequireLink(t, rep, oemLink, imgA)
	if got := rep.Get("oem_service"); got != "active ran" {
		t.Errorf("boot 1: fetched OEM sysext's service: %q, want \"active ran\"", got)
	}
	if countContaining(esrLines(rep), netStart) == 0 {
		t.Errorf("boot 1: the initrd did not start the network before the download:\n%s", strings.Join(esrLines(rep), "\n"))
	}
	if rep.Get("prefetch_rc") != "0" || countContaining(rep.All("prefetched"), storedB) != 1 {
		t.Errorf("boot 1: pre-update fetch: rc %q, images after it %q; its output:\n%s", rep.Get("prefetch_rc"), rep.All("prefetched"), strings.Join(rep.All("prefetch_log"), "\n"))
	}
	served := srv.served()
	for _, want := range []string{"/amd64-usr/" + VersionA + "/oem-" + OEMID + ".gz", "/amd64-usr/" + VersionB + "/oem-" + OEMID + ".gz"} {
		if countContaining(served, want) == 0 {
			t.Errorf("boot 1: the server was not asked for %s (requests %q)", want, served)
		}
	}
	if t.Failed() {
		t.Fatalf("boot 1 failed; log %s", rep.LogPath)
	}

	srv.stop()
	t.Log("boot 2: slot B, its image fetched before the update, server stopped")
	rep = m.Boot("B", server)
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	if l := oemLink + " -> "; countContaining(rep.All("link"), l+storedB)+countContaining(rep.All("link"), l+movedB) != 1 {
		t.Errorf("boot 2: %s does not point to the prefetched image (%s or, moved, %s): %q", oemLink, storedB, movedB, rep.All("link"))
	}
	if !rep.AnyContains("usr_ext", "oem-"+VersionB) || rep.Get("oem_service") != "active ran" {
		t.Errorf("boot 2: slot B's OEM sysext not merged or its service did not run: %q, %q", rep.Get("usr_ext"), rep.Get("oem_service"))
	}
	if n := countContaining(esrLines(rep), netStart); n != 0 {
		t.Errorf("boot 2: nothing was missing, yet the network was started (%d lines)", n)
	}
	if j := rep.All("net_journal"); len(j) != 0 {
		t.Errorf("boot 2: systemd-networkd ran although nothing was missing: %q", j)
	}
	if len(srv.served()) != len(served) {
		t.Errorf("boot 2: requests reached the stopped server: %q", srv.served()[len(served):])
	}
	if t.Failed() {
		t.Fatalf("boot 2 failed; log %s", rep.LogPath)
	}

	t.Log("boot 3: slot B, optional flatcar-bar missing, server down")
	rep = m.Boot("B", server)
	RequireStagesFinished(t, rep)
	RequireNoFailedUnits(t, rep)
	if !rep.AnyContains("usr_ext", "oem-"+VersionB) {
		t.Errorf("boot 3: slot B's OEM sysext not merged: %q", rep.Get("usr_ext"))
	}
	// One summary line (the ext-setup-root identifier's lines; the unit's
	// lines repeat them).
	if n := countContaining(rep.All("esr_log"), "optional", "flatcar-bar", "not fetched, boot goes on without it"); n != 1 {
		t.Errorf("boot 3: %d error lines for the optional image, want 1:\n%s", n, strings.Join(rep.All("esr_log"), "\n"))
	}
	if rep.AnyContains("link", "flatcar-bar") {
		t.Errorf("boot 3: flatcar-bar linked without an image: %q", rep.All("link"))
	}
	if t.Failed() {
		t.Fatalf("boot 3 failed; log %s", rep.LogPath)
	}

	t.Log("boot 4: slot A, essential OEM image missing, server down")
	rep = Boot(t, in, BootSpec{Initrd: m.initrd, Disk: m.disk, NIC: m.NIC, Timeout: m.Timeout,
		Cmdline: Cmdline("A") + " " + server + " systemd.journald.forward_to_console=1"})
	if rep.Done {
		t.Fatalf("boot 4: the boot finished although the essential OEM image could not be fetched; log %s", rep.LogPath)
	}
	console := strings.Join(rep.Lines, "\n")
	if !strings.Contains(console, "Entering emergency mode") {
		t.Errorf("boot 4: no emergency shell; last lines:\n%s", rep.Tail(40))
	}
	if countContaining(rep.Lines, "essential", "oem-"+OEMID+"-"+VersionA+".raw", "could not be fetched") == 0 {
		t.Errorf("boot 4: no error naming the essential image on the console; log %s", rep.LogPath)
	}
}

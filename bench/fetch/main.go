// Command fetch benchmarks the download of an extension image (make
// bench-fetch): fetch + verify + extract of a CrAU payload from a loopback
// HTTPS server by package fetch, against the intrinsic work measured in the
// same run on the same bytes (curl -o of the payload, sha256sum of it,
// bunzip2 of its REPLACE_BZ blobs), and the peak RSS of the fetching
// process for a larger image. The fetch runs in a child process (this
// program re-executed with -child) so that its wall time and peak RSS
// (VmHWM) are its own. It prints a markdown table and writes it
// to -out.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/pem"
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ext-setup-root/ext-setup-root/abslots"
	"github.com/ext-setup-root/ext-setup-root/fetch"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload"
	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/kcmdline"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

const version = "4000.1.0"

func main() {
	child := flag.Bool("child", false, "internal: run one fetch (url, ca, root) and print its peak RSS")
	out := flag.String("out", "out/bench-fetch.md", "markdown table")
	sizeMiB := flag.Int("size-mib", 64, "image size for the time comparison")
	rssMiB := flag.Int("rss-mib", 256, "image size for the peak RSS measurement")
	runs := flag.Int("runs", 3, "runs per measurement (the best is reported)")
	dir := flag.String("dir", "", "work directory (default: a new one under /var/tmp)")
	flag.Parse()
	if *child {
		if err := runChild(flag.Arg(0), flag.Arg(1), flag.Arg(2)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(*out, *sizeMiB, *rssMiB, *runs, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench-fetch:", err)
		os.Exit(1)
	}
}

// image makes n MiB that compress like a file system image holding text
// and binaries: alternating MiB of repetitive text and random bytes.
func image(mib int) []byte {
	b := make([]byte, mib<<20)
	r := rand.New(rand.NewSource(1))
	words := strings.Fields("the quick brown fox jumps over lazy dog systemd sysext flatcar usr lib bin share")
	for i := 0; i < mib; i++ {
		chunk := b[i<<20 : (i+1)<<20]
		if i%2 == 1 {
			r.Read(chunk)
			continue
		}
		var w bytes.Buffer
		for w.Len() < len(chunk) {
			w.WriteString(words[r.Intn(len(words))])
			w.WriteByte(" \n"[r.Intn(2)])
		}
		copy(chunk, w.Bytes())
	}
	return b
}

// bzBlobs concatenates the REPLACE_BZ blobs of payload p: a multi-stream
// bzip2 file, what bunzip2 must decompress for the intrinsic figure.
func bzBlobs(p []byte) ([]byte, error) {
	ms := binary.BigEndian.Uint64(p[12:20])
	m, err := payload.ParseManifest(p[20:20+ms], payload.Limits{MaxImage: 1 << 40})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	base := 20 + ms
	for _, op := range m.Ops {
		if op.Type == payload.OpReplaceBZ {
			out.Write(p[base+op.DataOffset : base+op.DataOffset+op.DataLength])
		}
	}
	return out.Bytes(), nil
}

// makeRoot writes a target root with os-release and the trusted key.
func makeRoot(dir string) error {
	files := map[string]string{
		"usr/lib/os-release": "ID=flatcar\nVERSION=" + version + "\nVERSION_ID=" + version + "\nFLATCAR_BOARD=amd64-usr\n",
		"usr/share/update_engine/update-payload-key.pub.pem": string(payloadtest.PublicPEM(payloadtest.KeyA())),
	}
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runChild fetches the OEM image of root from base through package fetch
// (everything but the extension engine's mount check, which the synthetic
// image cannot pass) and prints its peak RSS in KiB.
func runChild(base, ca, root string) error {
	cfg := fetch.DefaultConfig()
	cfg.BaseURL, cfg.CABundle, cfg.Attempts, cfg.Deadline = base, ca, 1, "10m"
	f := &fetch.Fetcher{Config: cfg, Cmdline: kcmdline.ParseString(""), Log: oplog.Discard(),
		Check: func(string, string, string, release.Host) (map[string]string, error) {
			return map[string]string{"ID": "flatcar", "VERSION_ID": version}, nil
		}}
	r, err := rootfs.Open(root)
	if err != nil {
		return err
	}
	defer r.Close()
	m := abslots.Missing{Kind: "oem", Name: "bench", File: "oem-bench-" + version + ".raw", Dir: "/etc/flatcar/oem-sysext",
		Link: "/etc/extensions/oem-bench.raw", Version: version}
	if err := f.Fetch(context.Background(), abslots.RootFS{Root: r}, m); err != nil {
		return err
	}
	// VmHWM, not getrusage's maxrss: Linux carries the forking parent's
	// peak (which holds the whole payload) into the child's maxrss at
	// exec; VmHWM belongs to the child's own address space.
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Println(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return nil
		}
	}
	return fmt.Errorf("no VmHWM in /proc/self/status")
}

// server serves p as the OEM image "bench" over loopback HTTPS and
// returns its URL and CA file.
func server(p []byte, dir string) (*httptest.Server, string, error) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/amd64-usr/"+version+"/oem-bench.gz" {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "p", time.Time{}, bytes.NewReader(p))
	}))
	ca := filepath.Join(dir, "ca.pem")
	err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	return srv, ca, err
}

// sample is one measured process: wall and CPU (user+sys, its waited-for
// children included) time.
type sample struct{ wall, cpu time.Duration }

func cpuOf(ps *os.ProcessState) time.Duration { return ps.UserTime() + ps.SystemTime() }

// ours runs one child fetch into a fresh root; times and RSS (KiB).
func ours(srv *httptest.Server, ca, dir string) (sample, int64, error) {
	root, err := os.MkdirTemp(dir, "root")
	if err != nil {
		return sample{}, 0, err
	}
	defer os.RemoveAll(root)
	if err := makeRoot(root); err != nil {
		return sample{}, 0, err
	}
	start := time.Now()
	cmd := exec.Command(os.Args[0], "-child", srv.URL, ca, root)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	d := time.Since(start)
	if err != nil {
		return sample{}, 0, fmt.Errorf("child: %v: %s", err, out)
	}
	var rss int64
	fmt.Sscan(string(out), &rss)
	return sample{d, cpuOf(cmd.ProcessState)}, rss, nil
}

// timed runs a shell command and returns its times.
func timed(cmd string) (sample, error) {
	start := time.Now()
	c := exec.Command("sh", "-c", cmd)
	out, err := c.CombinedOutput()
	if err != nil {
		return sample{}, fmt.Errorf("%s: %v: %s", cmd, err, out)
	}
	return sample{time.Since(start), cpuOf(c.ProcessState)}, nil
}

// best is the shortest wall and the shortest CPU time of ss.
func best(ss []sample) sample {
	w, c := make([]time.Duration, len(ss)), make([]time.Duration, len(ss))
	for i, s := range ss {
		w[i], c[i] = s.wall, s.cpu
	}
	sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return sample{w[0], c[0]}
}

func (a sample) add(b sample) sample { return sample{a.wall + b.wall, a.cpu + b.cpu} }

package main

import (
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
)

// prepared is one payload on disk and served.
type prepared struct {
	payload, blobs []byte
	bzOps, ops     int
}

func prepare(mib int) (prepared, error) {
	p, err := payloadtest.Build(image(mib), payloadtest.Options{Keys: []*rsa.PrivateKey{payloadtest.KeyA()}})
	if err != nil {
		return prepared{}, err
	}
	blobs, err := bzBlobs(p)
	return prepared{payload: p, blobs: blobs}, err
}

func run(out string, sizeMiB, rssMiB, runs int, dir string) error {
	if dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "bench-fetch")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	fmt.Fprintf(os.Stderr, "building the %d MiB payload (bzip2 -9 per MiB)...\n", sizeMiB)
	pp, err := prepare(sizeMiB)
	if err != nil {
		return err
	}
	srv, ca, err := server(pp.payload, dir)
	if err != nil {
		return err
	}
	blobFile := filepath.Join(dir, "blobs.bz2")
	if err := os.WriteFile(blobFile, pp.blobs, 0o644); err != nil {
		return err
	}
	url := srv.URL + "/amd64-usr/" + version + "/oem-bench.gz"
	dl := filepath.Join(dir, "download")
	var tOurs, tCurl, tSha, tBz []sample
	var rss64 int64
	for i := 0; i < runs; i++ {
		d, rss, err := ours(srv, ca, dir)
		if err != nil {
			return err
		}
		tOurs, rss64 = append(tOurs, d), max(rss64, rss)
		for _, m := range []struct {
			cmd string
			to  *[]sample
		}{
			{fmt.Sprintf("curl -sS --fail --cacert %s -o %s %s", ca, dl, url), &tCurl},
			{"sha256sum " + dl + " >/dev/null", &tSha},
			{"bunzip2 -c " + blobFile + " > " + dir + "/bunzip2.out", &tBz},
		} {
			d, err := timed(m.cmd)
			if err != nil {
				return err
			}
			*m.to = append(*m.to, d)
		}
		os.Remove(dl)
		os.Remove(dir + "/bunzip2.out")
	}
	srv.Close()
	intrinsic := best(tCurl).add(best(tSha)).add(best(tBz))
	fmt.Fprintf(os.Stderr, "building the %d MiB payload for the RSS figure...\n", rssMiB)
	big, err := prepare(rssMiB)
	if err != nil {
		return err
	}
	srv, ca, err = server(big.payload, dir)
	if err != nil {
		return err
	}
	_, rssBig, err := ours(srv, ca, dir)
	srv.Close()
	if err != nil {
		return err
	}
	var b strings.Builder
	o := best(tOurs)
	fmt.Fprintf(&b, "| measurement (best of %d, loopback HTTPS, work dir %s) | wall | CPU (user+sys) |\n|---|---|---|\n", runs, dir)
	fmt.Fprintf(&b, "| payload of a %d MiB image: %.1f MiB, %.1f MiB of it REPLACE_BZ blobs | | |\n", sizeMiB, mib(len(pp.payload)), mib(len(pp.blobs)))
	fmt.Fprintf(&b, "| ext-setup-root fetch + verify + extract + fsync + rename (own process) | %s | %s |\n", ms(o.wall), ms(o.cpu))
	for _, r := range []struct {
		n string
		s sample
	}{{"intrinsic: curl -o", best(tCurl)}, {"intrinsic: sha256sum", best(tSha)}, {"intrinsic: bunzip2 of the blobs", best(tBz)}, {"intrinsic total", intrinsic}} {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.n, ms(r.s.wall), ms(r.s.cpu))
	}
	fmt.Fprintf(&b, "| ratio ours / intrinsic (target <= 1.5) | %.2f | %.2f |\n", float64(o.wall)/float64(intrinsic.wall), float64(o.cpu)/float64(intrinsic.cpu))
	fmt.Fprintf(&b, "| peak RSS (VmHWM), %d MiB image | %.1f MiB | |\n", sizeMiB, float64(rss64)/1024)
	fmt.Fprintf(&b, "| peak RSS (VmHWM), %d MiB image (target < 32 MiB) | %.1f MiB | |\n", rssMiB, float64(rssBig)/1024)
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

func mib(n int) float64         { return float64(n) / (1 << 20) }
func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

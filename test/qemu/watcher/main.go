// Command watcher is a guest-side probe for the QEMU scenario
// TestQEMULateRefreshAtomic: it stats a set of paths in a tight loop and
// counts the stats that fail, to catch a moment in which /etc (or a file the
// confext overlay provides) is missing while the late refresh replaces the
// merge. A shell loop forks per stat and would sample only every few
// milliseconds; this loop samples every few microseconds even under TCG.
//
// Usage: watcher STOPFILE RESULTFILE PATH...
//
// It tells systemd it is ready (Type=notify) after the first round in which
// every path was present, so units ordered after it start only once the
// baseline is known; it stops when STOPFILE appears (or after two minutes)
// and writes "key=value" lines to RESULTFILE.
package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// probe is the state of one watched path.
type probe struct {
	path      string
	fails     int
	lastErr   string
	failSince time.Time // zero while the path is present
	maxGap    time.Duration
	gaps      int
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: watcher STOPFILE RESULTFILE PATH...")
		os.Exit(2)
	}
	stop, result := os.Args[1], os.Args[2]
	probes := make([]*probe, 0, len(os.Args)-3)
	for _, p := range os.Args[3:] {
		probes = append(probes, &probe{path: p})
	}
	var st syscall.Stat_t
	// Baseline: every path must exist before the watch counts anything.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, p := range probes {
			ok = ok && syscall.Stat(p.path, &st) == nil
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "watcher: watched paths never all present")
			os.Exit(1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	notifyReady()
	start := time.Now()
	end := start.Add(2 * time.Minute)
	rounds := 0
	stopped := false
	for {
		for _, p := range probes {
			if err := syscall.Stat(p.path, &st); err != nil {
				p.fails++
				p.lastErr = err.Error()
				if p.failSince.IsZero() {
					p.failSince = time.Now()
					p.gaps++
				}
			} else if !p.failSince.IsZero() {
				if g := time.Since(p.failSince); g > p.maxGap {
					p.maxGap = g
				}
				p.failSince = time.Time{}
			}
		}
		rounds++
		if rounds%32 == 0 {
			if syscall.Stat(stop, &st) == nil {
				stopped = true
				break
			}
			if time.Now().After(end) {
				break
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rounds=%d\nelapsed_ms=%d\nstopped=%v\n", rounds, time.Since(start).Milliseconds(), stopped)
	total := 0
	for i, p := range probes {
		if !p.failSince.IsZero() {
			p.maxGap = time.Since(p.failSince) // still missing at the end
		}
		total += p.fails
		fmt.Fprintf(&b, "path%d=%s\nfails%d=%d\ngaps%d=%d\nmax_gap_us%d=%d\n", i, p.path, i, p.fails, i, p.gaps, i, p.maxGap.Microseconds())
		if p.lastErr != "" {
			fmt.Fprintf(&b, "last_err%d=%s\n", i, p.lastErr)
		}
	}
	fmt.Fprintf(&b, "fails=%d\n", total)
	tmp := result + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "watcher:", err)
		os.Exit(1)
	}
	if err := os.Rename(tmp, result); err != nil {
		fmt.Fprintln(os.Stderr, "watcher:", err)
		os.Exit(1)
	}
	fmt.Print(b.String())
}

// notifyReady sends READY=1 to $NOTIFY_SOCKET (sd_notify), if set; Go's
// net package maps a leading '@' to the abstract namespace.
func notifyReady() {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	c, err := net.Dial("unixgram", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "watcher: notify:", err)
		return
	}
	defer c.Close()
	c.Write([]byte("READY=1"))
}

package systemd262

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ProbeStats is what one stat loop saw while merges were being replaced.
type ProbeStats struct {
	Path     string
	Stats    int64           // stat calls made
	Failures int64           // stat calls that failed
	Gaps     []time.Duration // each run of failures: first failure to next success
	Errors   map[string]int  // failure errno -> count
}

// WindowResult is the outcome of a window probe run.
type WindowResult struct {
	Tool         string
	Replacements int           // refresh commands run
	CmdFailures  int           // refresh commands with non-zero exit
	Elapsed      time.Duration // wall time of all replacements
	Probes       []ProbeStats
	// AffectedReplacements counts replacements during which any probe saw
	// a failure.
	AffectedReplacements int
}

// MaxGap returns the longest gap over all probes.
func (w WindowResult) MaxGap() time.Duration {
	var m time.Duration
	for _, p := range w.Probes {
		for _, g := range p.Gaps {
			if g > m {
				m = g
			}
		}
	}
	return m
}

// MedianGap returns the median gap over all probes (0 if none).
func (w WindowResult) MedianGap() time.Duration {
	var all []time.Duration
	for _, p := range w.Probes {
		all = append(all, p.Gaps...)
	}
	if len(all) == 0 {
		return 0
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all[len(all)/2]
}

// Failures returns the failed stats over all probes.
func (w WindowResult) Failures() int64 {
	var n int64
	for _, p := range w.Probes {
		n += p.Failures
	}
	return n
}

// String summarises the measurement in one line for the test log.
func (w WindowResult) String() string {
	s := fmt.Sprintf("%s: %d replacements in %v (%d failed commands), %d affected by a gap (%.3f per replacement), median gap %v, max gap %v",
		w.Tool, w.Replacements, w.Elapsed.Round(time.Millisecond), w.CmdFailures, w.AffectedReplacements,
		float64(w.AffectedReplacements)/float64(max(w.Replacements, 1)), w.MedianGap(), w.MaxGap())
	for _, p := range w.Probes {
		s += fmt.Sprintf("\n  %s: %d stats, %d failed, %d gaps %v", p.Path, p.Stats, p.Failures, len(p.Gaps), p.Errors)
	}
	return s
}

// Probe stats every path in paths in its own goroutine in a tight loop
// while replace is called n times, and reports what the loops saw. replace
// returns an error for a failed replacement (counted, not fatal).
func Probe(tool string, paths []string, n int, replace func(i int) error) WindowResult {
	var stop atomic.Bool
	var epoch atomic.Int64 // replacement number in progress
	affected := make([]atomic.Bool, n)
	res := WindowResult{Tool: tool, Replacements: n, Probes: make([]ProbeStats, len(paths))}
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Add(1)
		go func(ps *ProbeStats, p string) {
			defer wg.Done()
			ps.Path = p
			ps.Errors = map[string]int{}
			var st unix.Stat_t
			var gapStart time.Time
			inGap := false
			for !stop.Load() {
				err := unix.Stat(p, &st)
				now := time.Now()
				ps.Stats++
				if err != nil {
					ps.Failures++
					ps.Errors[err.Error()]++
					if e := epoch.Load(); e >= 0 && int(e) < n {
						affected[e].Store(true)
					}
					if !inGap {
						inGap, gapStart = true, now
					}
				} else if inGap {
					ps.Gaps = append(ps.Gaps, now.Sub(gapStart))
					inGap = false
				}
			}
			if inGap {
				ps.Gaps = append(ps.Gaps, time.Since(gapStart))
			}
		}(&res.Probes[i], p)
	}
	// Let the probes spin up before the first replacement.
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	for i := 0; i < n; i++ {
		epoch.Store(int64(i))
		if err := replace(i); err != nil {
			res.CmdFailures++
		}
	}
	res.Elapsed = time.Since(start)
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	for i := range affected {
		if affected[i].Load() {
			res.AffectedReplacements++
		}
	}
	return res
}

package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseStartTicks(t *testing.T) {
	for _, tc := range []struct {
		line string
		want uint64
		ok   bool
	}{
		{"253 (ext-setup-root) S 1 253 253 0 -1 4194560 3000 0 0 0 2 3 0 0 20 0 5 0 1289 1000000 1500 18446744073709551615", 1289, true},
		// A command name with spaces and a ')' of its own.
		{"7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0", 42, true},
		{"7 (short) R 1 2 3", 0, false},
		{"no parens at all", 0, false},
		{"7 (x) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5 0", 0, false},
	} {
		got, err := parseStartTicks(strings.NewReader(tc.line))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: %d, %v; want %d ok=%v", tc.line, got, err, tc.want, tc.ok)
		}
	}
}

// TestSinceExec: the process started before its package initialisation
// (initAt; to the 10 ms resolution of the start time), and not much
// earlier.
func TestSinceExec(t *testing.T) {
	time.Sleep(30 * time.Millisecond)
	d, err := sinceExec()
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := time.Since(initAt)-10*time.Millisecond, time.Since(initAt)+2*time.Second; d < lo || d > hi {
		t.Errorf("since exec %v, want within [%v, %v]", d, lo, hi)
	}
}

func FuzzParseStartTicks(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0"))
	f.Add([]byte("7 (a) b) (c) R 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseStartTicks(strings.NewReader(string(b)))
	})
}

// TestStartupReportProbeInsideOurs (issue 14 item 11): the kernel feature
// probe runs before "our set-up" is measured, so the set-up figure
// includes it. Before, the probe ran inside the log line's arguments after
// the measurement ("our set-up 0 ms of which kernel feature probe 71 ms").
func TestStartupReportProbeInsideOurs(t *testing.T) {
	start := time.Now()
	const probeTook = 60 * time.Millisecond
	probe := func() time.Duration { time.Sleep(probeTook); return probeTook }
	since := func() (time.Duration, error) { return time.Since(start) + time.Second, nil }
	line, ok := startupReport("pre", probe, since, start)
	if !ok {
		t.Fatal("no line")
	}
	var total, runtime, ours, p int64
	if _, err := fmt.Sscanf(line, "process start-up: %d ms from exec to the start of stage pre (exec and Go runtime %d ms, our set-up %d ms of which kernel feature probe %d ms)", &total, &runtime, &ours, &p); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	if p != probeTook.Milliseconds() || ours < p {
		t.Errorf("%q: our set-up %d ms does not include the probe's %d ms", line, ours, p)
	}
	if _, ok := startupReport("pre", probe, func() (time.Duration, error) { return 0, errors.New("no /proc") }, start); ok {
		t.Error("a line without the time since exec")
	}
}

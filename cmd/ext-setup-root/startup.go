package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/paths"
)

// initAt is when this package's variables were initialised: after the
// Go runtime started, before main. It splits the start-up figure into the
// exec and runtime start, and our own set-up.
var initAt = time.Now()

// userHZ is the unit of /proc/PID/stat's times (USER_HZ, 100 on every
// architecture Linux exports to user space).
const userHZ = 100

// parseStartTicks returns field 22 of a /proc/PID/stat line, the start
// time in clock ticks since boot. The command name (field 2) is in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'. The line is bounded at 4 KiB.
func parseStartTicks(r io.Reader) (uint64, error) {
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 20", len(f))
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}

// sinceExec is how long ago this process was started (exec'd by its
// parent's fork), to 10 ms: CLOCK_BOOTTIME now minus the start time in
// /proc/self/stat (which counts boot time too).
func sinceExec() (time.Duration, error) {
	f, err := os.Open(paths.ProcSelfStat)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	ticks, err := parseStartTicks(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", paths.ProcSelfStat, err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, err
	}
	d := time.Duration(ts.Nano()) - time.Duration(ticks)*time.Second/userHZ
	return max(d, 0), nil
}

// startupReport is the start-up log line of stage: how long since exec
// (sinceExec), split into exec and Go runtime (before start, when the
// package was initialised) and our set-up (since start). The kernel
// feature probe (probe, which runs it on first use and returns how long
// it took) runs before the split is measured, so the probe is inside "our
// set-up" that the line says it is part of. ok is false when the time
// since exec cannot be read.
func startupReport(stage string, probe func() time.Duration, sinceExec func() (time.Duration, error), start time.Time) (string, bool) {
	p := probe()
	d, err := sinceExec()
	if err != nil {
		return "", false
	}
	ours := time.Since(start)
	return fmt.Sprintf("process start-up: %d ms from exec to the start of stage %s (exec and Go runtime %d ms, our set-up %d ms of which kernel feature probe %d ms)",
		d.Milliseconds(), stage, max(d-ours, 0).Milliseconds(), ours.Milliseconds(), p.Milliseconds()), true
}

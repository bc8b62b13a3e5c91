package boot

import (
	"regexp"
	"strconv"
	"time"
)

// SummaryRE matches the one summary line each stage logs (Summary.String),
// anywhere in a line so that journal or console prefixes do not matter.
// Groups: 1 stage, 2 "finished"|"failed", 3 milliseconds, 4 the parts in
// parentheses, 5 the error (failed only). The QEMU tests use it to report
// guest time per stage; keep it in step with Summary.String.
var SummaryRE = regexp.MustCompile(`stage (pre|post|late-confext|late-sysext) (finished|failed) in ([0-9]+)ms \((.*?)\)(?:: (.*))?$`)

// StageLine is a parsed summary line.
type StageLine struct {
	Stage    Stage
	Failed   bool
	Duration time.Duration
	Parts    string
	Err      string
}

// ParseSummaryLine parses a summary line (with any prefix); ok is false
// when line is not one.
func ParseSummaryLine(line string) (l StageLine, ok bool) {
	m := SummaryRE.FindStringSubmatch(line)
	if m == nil {
		return l, false
	}
	ms, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		return l, false
	}
	return StageLine{Stage: Stage(m[1]), Failed: m[2] == "failed", Duration: time.Duration(ms) * time.Millisecond, Parts: m[4], Err: m[5]}, true
}

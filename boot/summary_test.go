package boot

import (
	"errors"
	"testing"
	"time"
)

func TestSummaryRoundTrip(t *testing.T) {
	for _, s := range []*Summary{
		{Stage: StagePre, Duration: 1234567 * time.Microsecond, Link: "created", Confext: &ExtResult{Merged: []string{"a", "b"}}},
		{Stage: StagePost, Duration: 5 * time.Millisecond, Links: &SelectResult{Changes: 2}, Confext: &ExtResult{Unchanged: true}, SysextNote: "masked"},
		{Stage: StagePre, Duration: 9 * time.Millisecond, Link: "present", Err: errors.New("confext merge: essential confext x (matches \"x*\") not merged: (bad)")},
		{Stage: StageLateSysext, Disabled: "x"},
	} {
		line := "Nov 22 04:00:00 host ext-setup-root[42]: " + s.String()
		l, ok := ParseSummaryLine(line)
		if !ok {
			t.Fatalf("not parsed: %q", line)
		}
		if l.Stage != s.Stage || l.Failed != (s.Err != nil) || l.Duration != s.Duration.Truncate(time.Millisecond) {
			t.Errorf("%q -> %+v", line, l)
		}
		if s.Err != nil && l.Err != s.Err.Error() {
			t.Errorf("err %q, want %q", l.Err, s.Err)
		}
	}
	if _, ok := ParseSummaryLine("op(1): [finished] stage pre things"); ok {
		t.Error("parsed a non-summary line")
	}
}

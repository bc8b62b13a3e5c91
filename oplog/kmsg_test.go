package oplog

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// fakeKernelKmsg behaves like the kernel's /dev/kmsg for one opener: a
// write over 1024 bytes fails with EINVAL (PRINTKRB_RECORD_MAX), and
// without printk.devkmsg=on only 10 records per 5 s are kept, the rest
// dropped with a successful return (devkmsg_write, ___ratelimit).
type fakeKernelKmsg struct {
	now             func() time.Time
	begin           time.Time
	printed, missed int
	records         []string
}

func (k *fakeKernelKmsg) Write(p []byte) (int, error) {
	if len(p) > 1024 {
		return 0, syscall.EINVAL
	}
	now := k.now()
	if k.begin.IsZero() || now.Sub(k.begin) >= 5*time.Second {
		k.begin, k.printed = now, 0
	}
	if k.printed >= 10 {
		k.missed++
		return len(p), nil
	}
	k.printed++
	k.records = append(k.records, string(p))
	return len(p), nil
}

// TestKmsgLongLine (issue 18 item 6): a line longer than one record
// arrives whole, in several records, none over the limit and no
// character cut in two.
func TestKmsgLongLine(t *testing.T) {
	clock := time.Unix(1000, 0)
	k := &fakeKernelKmsg{now: func() time.Time { return clock }}
	s := NewKmsgSink(k, true)
	s.Now = k.now
	msg := strings.Repeat("é/path/", 300) // 2,400 bytes, two-byte characters
	New(s).Errorf("op(3): [failed]   %s", msg)
	if len(k.records) < 3 {
		t.Fatalf("%d records: %q", len(k.records), k.records)
	}
	var joined strings.Builder
	for i, r := range k.records {
		if len(r) > KmsgRecordMax || !strings.HasSuffix(r, "\n") || !utf8.ValidString(r) {
			t.Errorf("record %d: %d bytes, valid UTF-8 %v", i, len(r), utf8.ValidString(r))
		}
		body := strings.TrimPrefix(strings.TrimSuffix(r, "\n"), "<11>ext-setup-root: ")
		if i > 0 {
			body = strings.TrimPrefix(body, "(continued) ")
		}
		joined.WriteString(body)
	}
	if joined.String() != "error: op(3): [failed]   "+msg {
		t.Errorf("the records do not add up to the line")
	}
}

// TestKmsgRateLimitKeepsSummary (issue 18 item 6): a stage that logs more
// lines than the kernel's rate limit lets through still gets its errors
// and its summary line into the kernel log, and says how many lines it
// left out.
func TestKmsgRateLimitKeepsSummary(t *testing.T) {
	clock := time.Unix(1000, 0)
	k := &fakeKernelKmsg{now: func() time.Time { return clock }}
	s := NewKmsgSink(k, true)
	s.Now = k.now
	l := New(s)
	for i := 0; i < 30; i++ {
		l.Infof("op(%d): [started]  something", i)
	}
	l.Warnf("skipping confext image 50-user: bad")
	l.Noticef("stage pre finished in 12ms (confext: 1 merged, 1 skipped)")
	all := strings.Join(k.records, "")
	if k.missed != 0 {
		t.Errorf("the kernel dropped %d records: we did not stay within its limit", k.missed)
	}
	for _, want := range []string{"warning: skipping confext image 50-user", "stage pre finished in 12ms", "24 log lines not written to /dev/kmsg"} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	// The next window lets info lines through again.
	clock = clock.Add(6 * time.Second)
	l.Infof("later line")
	if !strings.Contains(k.records[len(k.records)-1], "later line") {
		t.Errorf("no info line in the next window: %q", k.records)
	}
	// printk.devkmsg=on: nothing is held back by us.
	k2 := &fakeKernelKmsg{now: func() time.Time { return clock }}
	l2 := New(NewKmsgSink(k2, false))
	for i := 0; i < 5; i++ {
		l2.Infof("line %d", i)
	}
	if len(k2.records) != 5 {
		t.Errorf("unlimited sink wrote %d of 5 lines", len(k2.records))
	}
}

func TestKmsgRecordsShort(t *testing.T) {
	got := KmsgRecords("<14>x: ", "a\nb")
	if fmt.Sprint(got) != fmt.Sprint([]string{"<14>x: a\n", "<14>x: b\n"}) {
		t.Errorf("%q", got)
	}
}

// FuzzKmsgRecords: log lines carry names from images and disks; whatever
// they hold, every record fits the kernel's limit, ends in one newline,
// and the records add up to the line (newlines aside).
func FuzzKmsgRecords(f *testing.F) {
	f.Add("short")
	f.Add(strings.Repeat("é", 700) + "\n" + strings.Repeat("x", 2000))
	f.Add("\xff\xfe" + strings.Repeat("\xe2\x82", 600))
	f.Fuzz(func(t *testing.T, msg string) {
		if len(msg) > 1<<16 {
			return
		}
		head := "<14>ext-setup-root: "
		var joined strings.Builder
		for i, r := range KmsgRecords(head, msg) {
			if len(r) > KmsgRecordMax || !strings.HasPrefix(r, head) || !strings.HasSuffix(r, "\n") {
				t.Fatalf("record %d: %q", i, r)
			}
			joined.WriteString(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSuffix(r, "\n"), head), "(continued) "))
		}
		if want := strings.ReplaceAll(msg, "\n", ""); joined.String() != want && !strings.Contains(msg, "(continued) ") {
			t.Fatalf("records do not add up: %q vs %q", joined.String(), want)
		}
	})
}

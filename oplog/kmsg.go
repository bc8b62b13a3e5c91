package oplog

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// KmsgRecordMax bounds one write to /dev/kmsg, "<PRI>" prefix and newline
// included. The kernel refuses a longer write with EINVAL and the whole
// line is lost: its limit is 1024 bytes since Linux 6.1
// (PRINTKRB_RECORD_MAX) and 992 before (LOG_LINE_MAX, 1024 minus a
// 32-byte prefix), so the smaller one is used.
const KmsgRecordMax = 992

// The kernel's rate limit for writers to /dev/kmsg when the printk.devkmsg
// switch is "ratelimit" (the default): each opener may write KmsgBurst
// records per KmsgInterval (devkmsg_write, ___ratelimit); the rest are
// dropped without an error.
const (
	KmsgBurst    = 10
	KmsgInterval = 5 * time.Second
	// kmsgReserve records of every window are kept for errors, warnings
	// and notices (the stage summary is one of those) and for the line
	// that reports dropped ones.
	kmsgReserve = 4
	// kmsgSlack widens our window a little, so that our count never
	// believes in a fresh window before the kernel's (jiffies) does.
	kmsgSlack = 100 * time.Millisecond
)

// KmsgSink writes "<PRI>ext-setup-root: msg" records to /dev/kmsg, the only
// log that exists in an early initrd before journald runs. A line longer
// than one record is split into several (the later ones marked
// "(continued)"). With Limited set it keeps under the kernel's rate limit
// itself: info and debug lines use at most KmsgBurst-kmsgReserve records
// per window, so that errors, warnings and notices (the stage's summary
// line is a notice or an error) always find room, and the lines it drops
// are counted and reported in a line of their own.
type KmsgSink struct {
	W io.Writer
	// Limited: the kernel rate-limits this writer (printk.devkmsg is not
	// "on").
	Limited bool
	// Now is time.Now unless a test sets it.
	Now func() time.Time

	begin   time.Time // start of the current window; zero before the first write
	used    int       // records written in the window
	dropped int       // info/debug lines dropped and not yet reported
}

// NewKmsgSink returns a sink writing to w; limited says whether the kernel
// rate-limits it (printk.devkmsg=ratelimit, the default).
func NewKmsgSink(w io.Writer, limited bool) *KmsgSink {
	return &KmsgSink{W: w, Limited: limited, Now: time.Now}
}

// Log implements Sink.
func (s *KmsgSink) Log(level Level, msg string) {
	// facility user (1<<3) so the records are not mistaken for kernel messages.
	head := fmt.Sprintf("<%d>ext-setup-root: ", 8+int(level))
	records := KmsgRecords(head, levelTag(level)+msg)
	important := level <= Notice
	if s.Limited && !s.take(len(records), important) {
		s.dropped++
		return
	}
	for _, r := range records {
		io.WriteString(s.W, r)
	}
}

// take reserves n records in the current window and reports whether the
// line may be written (a line that does not fit is counted as dropped by
// the caller). When a line goes out and there is room for one more
// record, the count of dropped lines is reported first.
func (s *KmsgSink) take(n int, important bool) bool {
	now := s.Now()
	if s.begin.IsZero() || now.Sub(s.begin) > KmsgInterval+kmsgSlack {
		s.begin, s.used = now, 0
	}
	limit := KmsgBurst - kmsgReserve
	if important {
		limit = KmsgBurst
	}
	if s.used+n > limit {
		return false
	}
	if s.dropped > 0 && s.used+1+n <= limit {
		fmt.Fprintf(s.W, "<%d>ext-setup-root: %d log lines not written to /dev/kmsg to stay within the kernel's rate limit (%d records per %s unless printk.devkmsg=on); info lines give way to errors, warnings and notices such as the stage summary\n",
			8+int(Notice), s.dropped, KmsgBurst, KmsgInterval)
		s.used++
		s.dropped = 0
	}
	s.used += n
	return true
}

// KmsgRecords splits head+msg into /dev/kmsg records of at most
// KmsgRecordMax bytes, each ending in a newline: one per line of msg, and
// a line too long for one record continues in the next ones, cut at a
// UTF-8 character boundary and marked "(continued) ".
func KmsgRecords(head, msg string) []string {
	const cont = "(continued) "
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		prefix := ""
		for first := true; first || line != ""; first = false {
			room := KmsgRecordMax - len(head) - len(prefix) - 1
			part := line
			if len(part) > room {
				cut := room
				for cut > 0 && !utf8.RuneStart(part[cut]) {
					cut--
				}
				if cut == 0 {
					cut = room
				}
				part = part[:cut]
			}
			out = append(out, head+prefix+part+"\n")
			line = line[len(part):]
			prefix = cont
		}
	}
	return out
}

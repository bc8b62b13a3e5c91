package oplog

import (
	"fmt"
	"io"

	"github.com/coreos/go-systemd/v22/journal"
)

// KmsgSink writes "<PRI>ext-setup-root: msg" records to /dev/kmsg, the only
// log that exists in an early initrd before journald runs. Each Log call is
// one write(2), which the kernel turns into one record.
type KmsgSink struct{ W io.Writer }

// Log implements Sink.
func (s KmsgSink) Log(level Level, msg string) {
	// facility user (1<<3) so the records are not mistaken for kernel messages.
	fmt.Fprintf(s.W, "<%d>ext-setup-root: %s%s\n", 8+int(level), levelTag(level), msg)
}

// JournalSink sends messages to journald with SYSLOG_IDENTIFIER set, so
// `journalctl -t ext-setup-root` finds them in the initrd and after boot.
type JournalSink struct{ Fallback Sink }

// Log implements Sink.
func (s JournalSink) Log(level Level, msg string) {
	err := journal.Send(msg, journal.Priority(level), map[string]string{"SYSLOG_IDENTIFIER": "ext-setup-root"})
	if err != nil && s.Fallback != nil {
		s.Fallback.Log(level, msg)
	}
}

// journalEnabled reports whether journald's socket accepts messages.
func journalEnabled() bool { return journal.Enabled() }

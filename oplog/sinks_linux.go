package oplog

import (
	"github.com/coreos/go-systemd/v22/journal"
)

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

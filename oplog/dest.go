package oplog

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/paths"
)

// Destination is where log lines go.
type Destination string

// The destinations, chosen by Choose. The two with "+stderr" write every
// line to stderr as well: a person at a terminal in the initrd.
const (
	ToJournal          Destination = "journal"
	ToStderr           Destination = "stderr"
	ToKmsg             Destination = "kmsg"
	ToJournalAndStderr Destination = "journal+stderr"
	ToKmsgAndStderr    Destination = "kmsg+stderr"
)

// LogEnv is the environment variable that overrides the choice:
// EXT_SETUP_ROOT_LOG=journal|stderr|kmsg.
const LogEnv = "EXT_SETUP_ROOT_LOG"

// Facts are what the choice of destination depends on; Gather reads them
// from the process, tests fill them in.
type Facts struct {
	// Override is $EXT_SETUP_ROOT_LOG ("" when unset).
	Override string
	// StderrIsJournal: $JOURNAL_STREAM names stderr's device and inode,
	// i.e. systemd connected stderr to the journal (systemd.exec(5)); a
	// child whose stderr was redirected elsewhere inherits the variable
	// but not the match.
	StderrIsJournal bool
	// InInitrd: /etc/initrd-release exists.
	InInitrd bool
	// Journald: journald's socket accepts messages.
	Journald bool
	// Kmsg: /dev/kmsg can be opened for writing.
	Kmsg bool
	// StderrIsTTY: stderr is a terminal (a person ran us, for example
	// from the initrd's emergency shell).
	StderrIsTTY bool
}

// Choose picks the destination by convention:
//   - EXT_SETUP_ROOT_LOG=journal|stderr|kmsg wins (another value is
//     reported and ignored);
//   - the journal when stderr is the unit's journal stream (sent directly
//     so that every line keeps its priority), or in an initrd with
//     journald;
//   - /dev/kmsg only in an initrd without journald, the only log that
//     exists that early;
//   - stderr otherwise: a person at a terminal or a pipe runs it;
//   - and, in an initrd, stderr as well when it is a terminal and not the
//     journal stream: a person rerunning a stage from the emergency shell
//     sees the lines there, and the journal (or kmsg) still gets them.
//
// A choice that cannot be used falls back: journal to stderr (which is the
// journal stream anyway, or the person's), kmsg to stderr. The reason says
// why, for a debug line.
func Choose(f Facts) (d Destination, reason string, problem error) {
	switch Destination(f.Override) {
	case ToJournal, ToStderr, ToKmsg:
		d, reason = Destination(f.Override), LogEnv+"="+f.Override
	case "":
	default:
		problem = fmt.Errorf("%s=%q is not journal, stderr or kmsg; ignored", LogEnv, f.Override)
	}
	if d == "" {
		switch {
		case f.StderrIsJournal:
			d, reason = ToJournal, "stderr is the journal stream ($JOURNAL_STREAM)"
		case f.InInitrd && f.Journald:
			d, reason = ToJournal, "initrd with journald"
		case f.InInitrd:
			d, reason = ToKmsg, "initrd without journald"
		default:
			d, reason = ToStderr, "not run by systemd with a journal stream, not in an initrd"
		}
	}
	if d == ToJournal && !f.Journald {
		d, reason = ToStderr, reason+"; journald's socket not reachable"
	}
	if d == ToKmsg && !f.Kmsg {
		d, reason = ToStderr, reason+"; /dev/kmsg not writable"
	}
	if f.Override == "" && f.InInitrd && f.StderrIsTTY && !f.StderrIsJournal {
		switch d {
		case ToJournal:
			d, reason = ToJournalAndStderr, reason+"; stderr is a terminal"
		case ToKmsg:
			d, reason = ToKmsgAndStderr, reason+"; stderr is a terminal"
		}
	}
	return d, reason, problem
}

// StderrIsJournalStream reports whether journalStream ($JOURNAL_STREAM,
// "DEV:INODE" in decimal) names the file fd refers to.
func StderrIsJournalStream(journalStream string, fd int) bool {
	ds, is, ok := strings.Cut(journalStream, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(ds, 10, 64)
	ino, err2 := strconv.ParseUint(is, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	st, err := fstat(fd)
	if err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// Open returns a Logger for the destination Choose picks from the facts
// of this process: getenv for EXT_SETUP_ROOT_LOG and JOURNAL_STREAM,
// stderr, inInitrd, and kmsgPath (/dev/kmsg). It returns the choice and
// a problem with EXT_SETUP_ROOT_LOG, if any, for the caller to log.
// /dev/kmsg is rate-limited by our sink unless paths.ProcPrintkDevkmsg
// says "on"; "off" (the kernel drops every write) counts as unusable.
func Open(getenv func(string) string, stderr *os.File, inInitrd bool, kmsgPath string) (*Logger, Destination, string, error) {
	f := Facts{
		Override:        getenv(LogEnv),
		StderrIsJournal: StderrIsJournalStream(getenv("JOURNAL_STREAM"), int(stderr.Fd())),
		InInitrd:        inInitrd,
		Journald:        journalEnabled(),
		StderrIsTTY:     isTerminal(int(stderr.Fd())),
	}
	devkmsg := printkDevkmsg()
	var kmsg *os.File
	if kmsgPath != "" && devkmsg != "off" {
		if k, err := os.OpenFile(kmsgPath, os.O_WRONLY|os.O_APPEND|unix.O_CLOEXEC, 0); err == nil {
			kmsg, f.Kmsg = k, true
		}
	}
	d, reason, problem := Choose(f)
	fallback := WriterSink{W: stderr}
	var l *Logger
	switch d {
	case ToJournal:
		l = New(JournalSink{Fallback: fallback})
	case ToJournalAndStderr:
		// stderr gets every line anyway: no fallback, or it would twice.
		l = New(TeeSink{JournalSink{}, fallback})
	case ToKmsg:
		l = New(NewKmsgSink(kmsg, devkmsg != "on"))
	case ToKmsgAndStderr:
		l = New(TeeSink{NewKmsgSink(kmsg, devkmsg != "on"), fallback})
	default:
		l = New(fallback)
	}
	if kmsg != nil && d != ToKmsg && d != ToKmsgAndStderr {
		kmsg.Close()
	}
	return l, d, reason, problem
}

// printkDevkmsg is the kernel's printk.devkmsg setting ("on", "off" or
// "ratelimit"); "" when it cannot be read, treated as the default,
// "ratelimit".
func printkDevkmsg() string {
	b, err := os.ReadFile(paths.ProcPrintkDevkmsg)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// TeeSink writes every line to each of its sinks, in order.
type TeeSink []Sink

// Log implements Sink.
func (t TeeSink) Log(level Level, msg string) {
	for _, s := range t {
		s.Log(level, msg)
	}
}

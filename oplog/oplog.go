// Package oplog logs what ext-setup-root does as numbered operations, in the
// style of Ignition's "op(N): [started] ..." lines, so that every side effect
// (a mount, a rename, a link) shows up in the journal with its paths and its
// outcome, and a boot can be debugged from the log alone.
package oplog

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/fault"
)

// Level is a message priority; it maps to syslog priorities for the journal
// and /dev/kmsg.
type Level int

// Levels, most severe first, numbered like syslog priorities.
const (
	Error   Level = 3
	Warning Level = 4
	Notice  Level = 5
	Info    Level = 6
	Debug   Level = 7
)

// Sink receives finished log lines. Implementations must be safe for use by
// one goroutine at a time; Logger serialises calls.
type Sink interface {
	Log(level Level, msg string)
}

// Logger writes operations and messages to a Sink. The zero value is not
// usable; use New, Auto or Discard.
type Logger struct {
	mu     sync.Mutex
	sink   Sink
	debug  bool
	nextOp int
	// parent is set for prefixed loggers, which share the parent's
	// operation counter so that op numbers stay unique in one run.
	parent *Logger
}

// New returns a Logger writing to sink.
func New(sink Sink) *Logger { return &Logger{sink: sink} }

// Discard returns a Logger that drops everything, for tests and library users
// that do not want output.
func Discard() *Logger { return New(discard{}) }

type discard struct{}

func (discard) Log(Level, string) {}

// SetDebug turns debug messages on or off (kernel command line
// ext-setup-root.debug, or --debug).
func (l *Logger) SetDebug(on bool) { l.mu.Lock(); l.debug = on; l.mu.Unlock() }

// DebugEnabled reports whether debug messages are written.
func (l *Logger) DebugEnabled() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.debug }

// WithPrefix returns a Logger sharing the sink and operation counter that
// puts prefix (for example "pre: ") before every message.
func (l *Logger) WithPrefix(prefix string) *Logger {
	return &Logger{sink: prefixSink{l, prefix}, debug: l.DebugEnabled(), parent: l}
}

type prefixSink struct {
	parent *Logger
	prefix string
}

func (p prefixSink) Log(level Level, msg string) { p.parent.emit(level, p.prefix+msg) }

func (l *Logger) emit(level Level, msg string) {
	if level == Debug && !l.DebugEnabled() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sink.Log(level, msg)
}

// Logf writes one message at level.
func (l *Logger) Logf(level Level, format string, args ...any) {
	l.emit(level, fmt.Sprintf(format, args...))
}

// Debugf writes a debug message; dropped unless SetDebug(true).
func (l *Logger) Debugf(format string, args ...any) { l.Logf(Debug, format, args...) }

// Infof writes an informational message.
func (l *Logger) Infof(format string, args ...any) { l.Logf(Info, format, args...) }

// Noticef writes a notice, e.g. a skipped image.
func (l *Logger) Noticef(format string, args ...any) { l.Logf(Notice, format, args...) }

// Warnf writes a warning: something went wrong and the run goes on.
func (l *Logger) Warnf(format string, args ...any) { l.Logf(Warning, format, args...) }

// Errorf writes an error message.
func (l *Logger) Errorf(format string, args ...any) { l.Logf(Error, format, args...) }

// Op is one side effect in progress. Finish it exactly once.
type Op struct {
	l     *Logger
	id    int
	desc  string
	start time.Time
}

// Op logs "op(N): [started] desc" and returns the operation; desc should
// read like a command line, with every path it touches.
func (l *Logger) Op(format string, args ...any) *Op {
	id := l.newOpID()
	o := &Op{l: l, id: id, desc: fmt.Sprintf(format, args...), start: time.Now()}
	l.Logf(Info, "op(%d): [started]  %s", id, o.desc)
	// A fault point for the crash tests of test builds (kill just before
	// the operation); an operation cannot fail here, so an injected error
	// is ignored.
	_ = fault.Point(fault.Op, o.desc)
	return o
}

func (l *Logger) newOpID() int {
	if l.parent != nil {
		return l.parent.newOpID()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextOp++
	return l.nextOp
}

// Finish logs "[finished]" when err is nil, else "[failed]" with the error,
// and returns err unchanged so callers can write `return op.Finish(err)`.
func (o *Op) Finish(err error) error {
	if err != nil {
		o.l.Logf(Error, "op(%d): [failed]   %s: %v", o.id, o.desc, err)
		return err
	}
	o.l.Logf(Info, "op(%d): [finished] %s (%s)", o.id, o.desc, time.Since(o.start).Round(time.Microsecond))
	return nil
}

// WriterSink writes "ext-setup-root[LEVEL]: msg" lines to w (stderr).
type WriterSink struct{ W io.Writer }

// Log implements Sink.
func (s WriterSink) Log(level Level, msg string) {
	fmt.Fprintf(s.W, "ext-setup-root: %s%s\n", levelTag(level), msg)
}

func levelTag(l Level) string {
	switch l {
	case Error:
		return "error: "
	case Warning:
		return "warning: "
	case Debug:
		return "debug: "
	}
	return ""
}

package oplog

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestOpStartedFinishedFailed(t *testing.T) {
	var buf bytes.Buffer
	l := New(WriterSink{W: &buf})
	l.Op("symlink %s -> %s", "/etc/extensions/a.raw", "/oem/a.raw").Finish(nil)
	err := errors.New("boom")
	if got := l.Op("rename %s", "/x").Finish(err); got != err {
		t.Fatalf("Finish returned %v, want the error it was given", got)
	}
	out := buf.String()
	for _, want := range []string{
		"op(1): [started]  symlink /etc/extensions/a.raw -> /oem/a.raw",
		"op(1): [finished] symlink /etc/extensions/a.raw -> /oem/a.raw",
		"op(2): [started]  rename /x",
		"error: op(2): [failed]   rename /x: boom",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestDebugGate(t *testing.T) {
	var buf bytes.Buffer
	l := New(WriterSink{W: &buf})
	l.Debugf("hidden")
	if buf.Len() != 0 {
		t.Fatalf("debug message written with debug off: %q", buf.String())
	}
	l.SetDebug(true)
	l.Debugf("shown")
	if !strings.Contains(buf.String(), "debug: shown") {
		t.Fatalf("debug message missing with debug on: %q", buf.String())
	}
}

func TestKmsgFormat(t *testing.T) {
	var buf bytes.Buffer
	New(NewKmsgSink(&buf, false)).Warnf("x %d", 1)
	if got := buf.String(); got != "<12>ext-setup-root: warning: x 1\n" {
		t.Fatalf("kmsg record = %q", got)
	}
}

func TestPrefixSharesCounter(t *testing.T) {
	var buf bytes.Buffer
	l := New(WriterSink{W: &buf})
	l.Op("first").Finish(nil)
	p := l.WithPrefix("pre: ")
	p.Op("a").Finish(nil)
	if !strings.Contains(buf.String(), "pre: op(2): [started]  a") {
		t.Fatalf("prefixed op line missing: %q", buf.String())
	}
}

package oplog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestChoose covers every branch of the log destination convention
// (issue 10 item 4).
func TestChoose(t *testing.T) {
	all := Facts{Journald: true, Kmsg: true}
	for _, tc := range []struct {
		name    string
		f       Facts
		want    Destination
		problem bool
	}{
		{"person or pipe", all, ToStderr, false},
		{"person, journald running", Facts{Journald: true, Kmsg: true}, ToStderr, false},
		{"unit with journal stream", Facts{StderrIsJournal: true, Journald: true, Kmsg: true}, ToJournal, false},
		{"journal stream, socket gone", Facts{StderrIsJournal: true, Kmsg: true}, ToStderr, false},
		{"initrd with journald", Facts{InInitrd: true, Journald: true, Kmsg: true}, ToJournal, false},
		{"initrd without journald", Facts{InInitrd: true, Kmsg: true}, ToKmsg, false},
		{"initrd without journald or kmsg", Facts{InInitrd: true}, ToStderr, false},
		{"override stderr in initrd", Facts{Override: "stderr", InInitrd: true, Journald: true, Kmsg: true}, ToStderr, false},
		{"override kmsg from a terminal", Facts{Override: "kmsg", Journald: true, Kmsg: true}, ToKmsg, false},
		{"override journal from a terminal", Facts{Override: "journal", Journald: true}, ToJournal, false},
		{"override journal without journald", Facts{Override: "journal"}, ToStderr, false},
		{"override kmsg not writable", Facts{Override: "kmsg"}, ToStderr, false},
		{"bad override ignored", Facts{Override: "syslog", InInitrd: true, Kmsg: true}, ToKmsg, true},
	} {
		d, reason, problem := Choose(tc.f)
		if d != tc.want || (problem != nil) != tc.problem || reason == "" {
			t.Errorf("%s: %s (%s), problem %v; want %s, problem %v", tc.name, d, reason, problem, tc.want, tc.problem)
		}
	}
}

func TestStderrIsJournalStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	match := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	if !StderrIsJournalStream(match, int(f.Fd())) {
		t.Errorf("%s does not match its own file", match)
	}
	for _, s := range []string{"", "garbage", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), fmt.Sprintf("%d:%d", st.Dev+1, st.Ino), "1:"} {
		if StderrIsJournalStream(s, int(f.Fd())) {
			t.Errorf("%q matched", s)
		}
	}
}

// TestOpen: the logger Open returns writes where Choose decided.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	kmsg := filepath.Join(dir, "kmsg")
	if err := os.WriteFile(kmsg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	l, d, _, _ := Open(env(nil), stderr, true, kmsg)
	if d != ToKmsg && d != ToJournal { // the test host may run journald
		t.Fatalf("initrd: %s", d)
	}
	l, d, _, _ = Open(env(map[string]string{LogEnv: "kmsg"}), stderr, false, kmsg)
	if d != ToKmsg {
		t.Fatalf("override kmsg: %s", d)
	}
	l.Warnf("to kmsg")
	l, d, _, _ = Open(env(nil), stderr, false, kmsg)
	if d != ToStderr {
		t.Fatalf("person: %s", d)
	}
	l.Warnf("to stderr")
	k, _ := os.ReadFile(kmsg)
	e, _ := os.ReadFile(stderr.Name())
	if string(k) != "<12>ext-setup-root: warning: to kmsg\n" || !strings.Contains(string(e), "warning: to stderr") || strings.Contains(string(e), "to kmsg") {
		t.Fatalf("kmsg %q, stderr %q", k, e)
	}
	// Under systemd with stderr connected to the journal: the journal, if
	// its socket is reachable here; stderr (the journal stream) if not.
	var st unix.Stat_t
	unix.Fstat(int(stderr.Fd()), &st)
	_, d, _, _ = Open(env(map[string]string{"JOURNAL_STREAM": fmt.Sprintf("%d:%d", st.Dev, st.Ino)}), stderr, false, kmsg)
	if d != ToJournal && d != ToStderr {
		t.Fatalf("journal stream: %s", d)
	}
	if _, _, _, problem := Open(env(map[string]string{LogEnv: "bogus"}), stderr, false, kmsg); problem == nil {
		t.Fatal("bogus override not reported")
	}
}

// TestChooseTerminalInInitrd (issue 18 item 5): in an initrd, a person at
// a terminal (the emergency shell) sees the lines on stderr as well; a
// unit's journal stream, a pipe and an override do not tee.
func TestChooseTerminalInInitrd(t *testing.T) {
	for _, tc := range []struct {
		f    Facts
		want Destination
	}{
		{Facts{InInitrd: true, Journald: true, Kmsg: true, StderrIsTTY: true}, ToJournalAndStderr},
		{Facts{InInitrd: true, Kmsg: true, StderrIsTTY: true}, ToKmsgAndStderr},
		{Facts{InInitrd: true, StderrIsTTY: true}, ToStderr},
		{Facts{InInitrd: true, Journald: true, StderrIsTTY: true, StderrIsJournal: true}, ToJournal},
		{Facts{InInitrd: true, Journald: true, Kmsg: true}, ToJournal},
		{Facts{Override: "journal", InInitrd: true, Journald: true, StderrIsTTY: true}, ToJournal},
		{Facts{Journald: true, StderrIsTTY: true}, ToStderr},
	} {
		if d, reason, _ := Choose(tc.f); d != tc.want {
			t.Errorf("%+v: %s (%s), want %s", tc.f, d, reason, tc.want)
		}
	}
}

// openPty returns both ends of a new pseudo-terminal.
func openPty(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testutil.Gate(t, "pseudo-terminals (/dev/ptmx): %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		testutil.Gate(t, "the pty's terminal end: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestOpenTerminalInInitrd (issue 18 item 5): a stage run by hand in the
// initrd's emergency shell prints its lines on the terminal, also where
// the journal or /dev/kmsg receives them.
func TestOpenTerminalInInitrd(t *testing.T) {
	master, tty := openPty(t)
	kmsg := filepath.Join(t.TempDir(), "kmsg")
	os.WriteFile(kmsg, nil, 0o644)
	l, d, reason, _ := Open(func(string) string { return "" }, tty, true, kmsg)
	l.Noticef("stage pre finished in 1ms (by hand)")
	// An end mark written by the test itself: reading up to it never
	// blocks, whether or not the logger wrote anything.
	fmt.Fprintf(tty, "END-OF-TEST\n")
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "END-OF-TEST") {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got.Write(buf[:n])
	}
	if !strings.Contains(got.String(), "stage pre finished in 1ms (by hand)") {
		t.Errorf("destination %s (%s): the terminal got %q", d, reason, got.String())
	}
}

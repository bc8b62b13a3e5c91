package main

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/oplog"
)

// testEnv returns an Env with buffers for output and no environment.
func testEnv() (*Env, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		Log: oplog.New(oplog.WriterSink{W: &errb})}, &out, &errb
}

func TestExitCodes(t *testing.T) {
	env, _, _ := testEnv()
	if c := exitCode(run(env, nil)); c != 2 {
		t.Errorf("no command: exit %d, want 2", c)
	}
	if c := exitCode(run(env, []string{"no-such-verb"})); c != 2 {
		t.Errorf("unknown command: exit %d, want 2", c)
	}
	if c := exitCode(run(env, []string{"version"})); c != 0 {
		t.Errorf("version: exit %d, want 0", c)
	}
	if c := exitCode(errors.New("x")); c != 1 {
		t.Errorf("plain error: exit %d, want 1", c)
	}
	if c := exitCode(&os.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist}); c != 1 {
		t.Errorf("path error: exit %d, want 1", c)
	}
}

// Command ext-setup-root prepares the real root from the initrd: A/B
// slot-aware extension image selection, the mutable /etc confext overlay with
// atomic replacement, and the sysext merge, leaving metadata that systemd's
// own systemd-confext/systemd-sysext accept as theirs.
//
// main only wires the process environment into an Env and maps errors to
// exit codes; every verb is a command registered by a cmd_*.go file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// Env is what every command gets injected instead of reaching for globals,
// so that tests run commands in-process with buffers and fake environments.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	Log    *oplog.Logger
}

// command is one verb of the CLI.
type command struct {
	name    string
	summary string
	run     func(env *Env, args []string) error
}

var commands = map[string]command{}

// register adds a verb; called from init() of the cmd_*.go files.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("duplicate command " + c.name)
	}
	commands[c.name] = c
}

// usageError marks bad command-line input; main exits 2 for it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// usagef returns a usageError.
func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitCode maps an error from a command to the process exit status:
// 0 success, 2 usage, 1 any other failure.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: ext-setup-root COMMAND [OPTIONS] [ARGS]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

// run dispatches args (without the program name) to a command.
func run(env *Env, args []string) error {
	if len(args) == 0 {
		usage(env.Stderr)
		return usagef("no command given")
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(env.Stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(env.Stderr)
		return usagef("unknown command %q", args[0])
	}
	err := c.run(env, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		// -h/--help printed the verb's usage already: not a failure.
		return nil
	}
	return err
}

func main() {
	paths.Load(os.Getenv)
	armTestHooks()
	env := &Env{
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Getenv: os.Getenv,
	}
	// Logs go where the convention says (oplog.Choose): the journal under
	// systemd or in an initrd with journald, /dev/kmsg in an initrd
	// without it, stderr for a person or a pipe; EXT_SETUP_ROOT_LOG
	// overrides.
	log, _, _, problem := oplog.Open(os.Getenv, os.Stderr, paths.InInitrd(), paths.DevKmsg)
	env.Log = log
	if problem != nil {
		env.Log.Warnf("%v", problem)
	}
	err := run(env, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "ext-setup-root: %s\n", strings.TrimSpace(err.Error()))
	}
	os.Exit(exitCode(err))
}

package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/ext-setup-root/ext-setup-root/boot"
	"github.com/ext-setup-root/ext-setup-root/paths"
	"github.com/ext-setup-root/ext-setup-root/varlink"
)

func init() {
	register(command{
		name:    "varlink",
		summary: "serve io.systemd.sysext over Varlink (started by systemd-sysext.socket and systemd-sysupdate-notify-sysext.socket)",
		run:     runVarlink,
	})
}

// runVarlink serves systemd 262's io.systemd.sysext interface on the
// sockets the service manager passed, with ext-setup-root's atomic
// refresh. The host drop-ins for systemd-sysext@.service and
// systemd-sysupdate-notify-sysext@.service run it; see docs/varlink.md.
func runVarlink(env *Env, args []string) error {
	fl := flag.NewFlagSet("varlink", flag.ContinueOnError)
	fl.SetOutput(env.Stderr)
	root := fl.String("root", "/", "root to merge in (tests; the units use /)")
	idle := fl.Duration("idle-timeout", 30*time.Second, "with a listening socket (Accept=no): exit after this long without a connection")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("varlink: %v", err)
	}
	if fl.NArg() != 0 {
		return usagef("varlink: unexpected arguments %q", fl.Args())
	}
	raw, err := os.ReadFile(paths.ProcCmdline)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		env.Log.Warnf("reading kernel command line %s: %v; using none", paths.ProcCmdline, err)
	}
	cl, err := boot.ParseCmdline(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("parsing kernel command line %s: %w", paths.ProcCmdline, err)
	}
	if cl.LateRefresh == boot.LateStock {
		// The same process, descriptors and LISTEN_* variables: the stock
		// server takes over the connection.
		env.Log.Infof("ext-setup-root.late-refresh=stock on the kernel command line: handing the Varlink connection over to systemd-sysext")
		return execStock([]string{"systemd-sysext"})
	}
	policy := ""
	cfg, cerr := boot.LoadConfig(*root)
	if cerr != nil {
		env.Log.Errorf("%v; ignoring the file (no image policy from it)", cerr)
	} else {
		policy = cfg.ImagePolicy
	}
	if cl.ImagePolicy != "" {
		policy = cl.ImagePolicy
	}
	files := activation.Files(true)
	b := &varlink.EngineBackend{Root: *root, Getenv: env.Getenv, Log: env.Log, ImagePolicy: policy, Reload: daemonReload}
	srv := &varlink.Server{
		Methods:     varlink.SysextMethods(b),
		Log:         env.Log,
		IdleTimeout: *idle,
		Info: varlink.Info{Vendor: "ext-setup-root", Product: "ext-setup-root (io.systemd.sysext)",
			Version: version, URL: "https://github.com/ext-setup-root/ext-setup-root", Interfaces: varlink.Interfaces()},
	}
	return srv.Serve(context.Background(), files)
}

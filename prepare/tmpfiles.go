package prepare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// tmpfilesDirs are where systemd-tmpfiles --root looks for a config name.
var tmpfilesDirs = []string{"/etc/tmpfiles.d", "/run/tmpfiles.d", "/usr/local/lib/tmpfiles.d", "/usr/lib/tmpfiles.d"}

// tmpfiles runs, as Flatcar does before Ignition, the vendor's own
// commands (flatcar-tmpfiles) and systemd-tmpfiles --root=ROOT --create
// for the named configs that the root has: the basic layout (/var/log/journal,
// /home, ...) must exist before systemd and Ignition look at it, and the
// rest waits for systemd-tmpfiles-setup.service. No library creates what a
// tmpfiles.d line describes with systemd's exact semantics, so the binary
// runs; --root makes it work on the root without a chroot. A missing
// program is logged, a failing one recorded as a problem: neither stops
// the boot.
func (r *run) tmpfiles(ctx context.Context) error {
	c := &r.o.Config.Tmpfiles
	var errs []error
	root := r.o.Root
	for _, cmd := range c.Commands {
		if _, err := os.Stat(cmd[0]); err != nil {
			r.log.Infof("prepare: %s not present; not run", cmd[0])
			continue
		}
		args := make([]string, len(cmd)-1)
		for i, a := range cmd[1:] {
			args[i] = strings.ReplaceAll(a, "{ROOT}", root)
		}
		if err := r.runProgram(ctx, cmd[0], args); err != nil {
			errs = append(errs, err)
		}
	}
	var present []string
	for _, n := range c.Configs {
		for _, d := range tmpfilesDirs {
			fd, err := openIn(r.live, path.Join(d, n), unix.O_PATH, false)
			if err == nil {
				closeFd(fd)
				present = append(present, n)
				break
			}
		}
	}
	switch {
	case len(present) == 0:
		r.res.Tmpfiles = "nothing to do"
		r.log.Infof("prepare: none of the tmpfiles configs %s is in %s; systemd-tmpfiles not run", strings.Join(c.Configs, " "), root)
		return errors.Join(errs...)
	case c.Binary == "":
		return errors.Join(errs...)
	}
	bin := c.Binary
	if !path.IsAbs(bin) {
		p, err := r.o.LookPath(bin)
		if err != nil {
			r.res.Tmpfiles = "not present"
			r.log.Noticef("prepare: %s not found in PATH; the early tmpfiles run is left to systemd-tmpfiles-setup.service", bin)
			return errors.Join(errs...)
		}
		bin = p
	} else if _, err := os.Stat(bin); err != nil {
		r.res.Tmpfiles = "not present"
		r.log.Noticef("prepare: %s not present; the early tmpfiles run is left to systemd-tmpfiles-setup.service", bin)
		return errors.Join(errs...)
	}
	args := append([]string{"--root=" + root, "--create"}, present...)
	if err := r.runProgram(ctx, bin, args); err != nil {
		r.res.Tmpfiles = "failed"
		errs = append(errs, err)
	} else if r.o.DryRun {
		r.res.Tmpfiles = "planned"
	} else {
		r.res.Tmpfiles = "ran"
	}
	return errors.Join(errs...)
}

func (r *run) runProgram(ctx context.Context, bin string, args []string) error {
	line := bin + " " + strings.Join(args, " ")
	a := Action{Duty: "tmpfiles", Op: "run", Path: bin, Why: line}
	if r.o.DryRun {
		r.res.Actions = append(r.res.Actions, a)
		r.log.Infof("dry run: prepare would run %s", line)
		return nil
	}
	fault("run " + bin)
	op := r.log.Op("run %s", line)
	cmd := r.o.Command(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if s := strings.TrimSpace(out.String()); s != "" {
		for _, l := range strings.Split(s, "\n") {
			r.log.Infof("%s: %s", path.Base(bin), l)
		}
	}
	if op.Finish(err) != nil {
		return fmt.Errorf("%s: %w", line, err)
	}
	r.res.Actions = append(r.res.Actions, a)
	return nil
}

package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel modules for dm-verity. Debian and Flatcar build dm_mod and
// dm_verity as modules; the initrd carries them (dracut module
// installkernel) but nothing loads them before the first verity image.
var (
	modulesDir  = "/lib/modules"
	sysModule   = "/sys/module"
	modprobeBin = []string{"/usr/sbin/modprobe", "/sbin/modprobe", "/usr/bin/modprobe"}
)

// ensureDMModules makes sure /dev/mapper/control exists and the verity
// target is known: when dm_mod or dm_verity is not loaded (no
// /sys/module entry; built-in ones have one), it loads dm_verity, which
// pulls dm_mod, dm_bufio and reed_solomon: with the root's modprobe when
// there is one, else by finit_module(2) from modules.dep. Each load is
// logged.
func ensureDMModules(logf func(string, ...any)) error {
	_, errCtl := os.Stat(dmControlPath)
	_, errVer := os.Stat(filepath.Join(sysModule, "dm_verity"))
	if errCtl == nil && errVer == nil {
		return nil
	}
	err := loadModule("dm_verity", logf)
	if _, e := os.Stat(dmControlPath); e != nil {
		if err == nil {
			err = e
		}
		return fmt.Errorf("cannot initialize device-mapper (%s missing, is dm_mod available?): %w", dmControlPath, err)
	}
	if err != nil && logf != nil {
		// The control node exists: dm_verity may be built in without a
		// /sys/module entry, or the kernel's own request_module("dm-verity")
		// will load it at the table load. Go on; a missing target fails
		// there with a clear error.
		logf("loading dm_verity failed (device-mapper present, going on): %v", err)
	}
	return nil
}

// LoadKernelModule loads a kernel module and its dependencies, with the
// root's modprobe when there is one, else by finit_module(2) from
// /lib/modules/$(uname -r)/modules.dep; already loaded is success.
func LoadKernelModule(name string, logf func(string, ...any)) error { return loadModule(name, logf) }

// loadModule loads a module and its dependencies.
func loadModule(name string, logf func(string, ...any)) error {
	for _, p := range modprobeBin {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		out, err := exec.Command(p, "-q", name).CombinedOutput()
		if logf != nil {
			if err != nil {
				logf("%s %s failed: %v", p, name, err)
			} else {
				logf("loaded kernel module %s with %s", name, p)
			}
		}
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", p, name, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	dir := filepath.Join(modulesDir, cstr(u.Release[:]))
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return fmt.Errorf("no modprobe and no modules.dep to load %s: %w", name, err)
	}
	defer f.Close()
	chain, err := moduleChain(f, name)
	if err != nil {
		return err
	}
	for _, rel := range chain {
		if err := finitPath(filepath.Join(dir, rel)); err != nil {
			return err
		}
		if logf != nil {
			logf("loaded kernel module %s", rel)
		}
	}
	return nil
}

// moduleChain reads modules.dep and returns the files to load for name,
// dependencies first. modules.dep lists each module's full dependency
// closure, nearest first, so loading them in reverse then the module
// itself is a valid order. '-' and '_' are the same in module names.
func moduleChain(r io.Reader, name string) ([]string, error) {
	want := strings.ReplaceAll(name, "-", "_")
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		base := filepath.Base(mod)
		base = base[:len(base)-len(filepath.Ext(base))]
		base = strings.TrimSuffix(base, ".ko")
		if strings.ReplaceAll(base, "-", "_") != want {
			continue
		}
		d := strings.Fields(deps)
		chain := make([]string, 0, len(d)+1)
		for i := len(d) - 1; i >= 0; i-- {
			chain = append(chain, d[i])
		}
		return append(chain, mod), nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("module %s not in modules.dep", name)
}

// finitPath loads one module file (compressed or not).
func finitPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	compressed := !strings.HasSuffix(p, ".ko")
	err = finitModule(f, compressed)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

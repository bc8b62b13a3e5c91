// Command dminit is the /init of the minimal QEMU guest of
// TestQEMUDMVerity: it exercises package image's device-mapper verity
// set-up against the real forky kernel (dm_mod, dm_verity, loop, erofs
// loaded from the initramfs by finit_module), prints "DMTEST key=value"
// lines on the console and powers off. It needs no disk and no systemd,
// so one boot takes seconds.
package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
)

func r(k, f string, a ...any) { fmt.Printf("DMTEST %s=%s\n", k, fmt.Sprintf(f, a...)) }

var log = oplog.New(oplog.WriterSink{W: os.Stdout})

func main() {
	defer func() {
		if x := recover(); x != nil {
			r("panic", "%v", x)
		}
		r("done", "1")
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}()
	os.MkdirAll("/proc", 0o755)
	os.MkdirAll("/sys", 0o755)
	os.MkdirAll("/dev", 0o755)
	unix.Mount("proc", "/proc", "proc", 0, "")
	unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	for _, m := range []string{"loop", "erofs"} {
		if err := image.LoadKernelModule(m, func(f string, a ...any) {}); err != nil {
			r("module_"+m, "%v", err)
		}
	}
	pcr := startPCRExtend()
	start := time.Now()
	run("good", "/images/good.raw", nil, false)
	pcr.take("good")
	r("good_ms", "%d", time.Since(start).Milliseconds())
	run("tampered", "/images/tampered.raw", nil, false)
	pcr.take("tampered")
	run("badsig", "/images/good.raw", errors.New("test verifier rejects"), false)
	pcr.take("badsig")
	run("reuse", "/images/good.raw", nil, true)
	pcr.take("reuse")
	listDM("end")
	r("loops_end", "%d", countLoops())
}

// dissect reads an image with package image.
func dissect(p string) (*os.File, *image.Dissected, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	st, _ := f.Stat()
	d, err := image.Dissect(f, st.Size(), image.DissectOptions{})
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, d, nil
}

func run(name, p string, verifyErr error, twice bool) {
	f, d, err := dissect(p)
	if err != nil {
		r(name+"_dissect", "%v", err)
		return
	}
	defer f.Close()
	r(name+"_roothash", "%s signed=%v", hex.EncodeToString(d.Verity.RootHash), d.Verity.Signature != nil)
	verified := 0
	o := image.SetupOptions{Log: log, Name: name, VerifySignature: func(*image.Verity) error { verified++; return verifyErr }}
	dev, err := image.SetupVerity(f, d, o)
	if err != nil {
		r(name+"_setup", "error %v", err)
		listDM(name + "_after_error")
		r(name+"_loops_after_error", "%d", countLoops())
		return
	}
	r(name+"_setup", "ok name=%s uuid=%s signed=%s reused=%v verified=%d", dev.Name, dev.UUID, dev.Signed, dev.Reused, verified)
	mnt := mountAndRead(name, dev, d.Data.FSType)
	if twice {
		f2, d2, _ := dissect(p)
		dev2, err := image.SetupVerity(f2, d2, o)
		if err != nil {
			r(name+"_second", "error %v", err)
		} else {
			r(name+"_second", "ok name=%s reused=%v", dev2.Name, dev2.Reused)
			mnt2 := mountAndRead(name+"_second", dev2, d2.Data.FSType)
			unmount(mnt2)
		}
		f2.Close()
	}
	listDM(name + "_mounted")
	unmount(mnt)
	r(name+"_removal_ms", "%d", waitNoDM(5*time.Second).Milliseconds())
	listDM(name + "_unmounted")
	r(name+"_loops_unmounted", "%d", countLoops())
}

func mountAndRead(name string, dev *image.Device, fstype string) string {
	fc, err := mount.NewFS(fstype, dev.Node)
	if err != nil {
		r(name+"_mount", "error %v", err)
		dev.Close()
		return ""
	}
	defer fc.Close()
	fc.SetFlag("ro")
	mfd, err := fc.Mount(unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		r(name+"_mount", "error %v", err)
		dev.Close()
		return ""
	}
	if err := dev.Mounted(); err != nil {
		r(name+"_mounted", "error %v", err)
	}
	target := "/mnt/" + name
	os.MkdirAll(target, 0o755)
	if err := unix.MoveMount(int(mfd.Fd()), "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		r(name+"_mount", "move error %v", err)
	}
	mfd.Close()
	b, err := os.ReadFile(filepath.Join(target, "etc/extsr/data.bin"))
	altered := strings.Count(string(b), ",")
	r(name+"_read", "bytes=%d err=%v altered=%d", len(b), err, altered)
	if st, err := os.ReadFile(filepath.Join(target, "etc/extsr/small.conf")); err == nil {
		r(name+"_small", "%s", strings.TrimSpace(string(st)))
	}
	return target
}

func unmount(target string) {
	if target != "" {
		unix.Unmount(target, unix.MNT_DETACH)
	}
}

func listDM(tag string) {
	ents, _ := filepath.Glob("/sys/block/dm-*")
	var out []string
	for _, e := range ents {
		n, _ := os.ReadFile(e + "/dm/name")
		u, _ := os.ReadFile(e + "/dm/uuid")
		out = append(out, strings.TrimSpace(string(n))+"|"+strings.TrimSpace(string(u)))
	}
	r("dm_"+tag, "%d %s", len(out), strings.Join(out, " "))
}

// waitNoDM waits until no device-mapper device is left, at most limit,
// and returns how long that took. Deferred removal is asynchronous (the
// lazy unmount's last reference, then the kernel's removal), and under
// TCG on a loaded host it can take well over the 200 ms once slept here.
func waitNoDM(limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		if ents, _ := filepath.Glob("/sys/block/dm-*"); len(ents) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func countLoops() int {
	ents, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	return len(ents)
}

package qemu

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BootSpec describes one QEMU boot of a disk.
type BootSpec struct {
	Initrd  string
	Disk    string
	Cmdline string        // appended to the base command line
	Timeout time.Duration // whole boot, from QEMU start to exit
	// OnLine, when set, sees every console line as it arrives, with a
	// function that cuts the power: QEMU gets SIGKILL, so the guest has no
	// shutdown and no flush (the power-cut tests, powercut.go).
	OnLine func(line string, cut func())

	// Drives are more raw disks after Disk (vdb, vdc, ...), attached the
	// same way (the dm-log-writes log of powercut_dmlog.go).
	Drives []string

	// NIC replaces "none" in -nic (e.g. a restricted user network with a
	// guestfwd rule, see fetch_test.go); "" boots without a network.
	NIC string
}

// BaseCmdline is what every boot passes: serial console, panic reboot (which
// -no-reboot turns into an exit) and no first-boot wizard.
// fsck.mode=skip: fsck of the fresh ROOT costs 15 s under TCG and
// checks nothing of ours. The long device and start timeouts keep a boot on
// a loaded CI machine (TCG is 10-50x slower than native) from tripping
// systemd's 90 s defaults.
// It names the amd64 console; baseCmdline gives the one of a guest.
const BaseCmdline = "console=ttyS0 panic=-1 systemd.firstboot=off systemd.show_status=error fsck.mode=skip log_buf_len=4M systemd.default_device_timeout_sec=600 systemd.default_timeout_start_sec=600"

// Boot runs QEMU (TCG, two vCPUs: MTTCG halves systemd boot time, see
// docs/qemu.md) until the guest powers off or the timeout kills it, and
// returns the parsed serial console. The raw log is kept in
// $TMPDIR/ext-setup-root-qemu-logs/<test>-<n>.log for post-mortems.
func Boot(t testing.TB, in *Inputs, spec BootSpec) *Report {
	t.Helper()
	rep := bootOnce(t, in, spec)
	if earlyKernelCrash(rep.Lines) {
		// The guest kernel crashed before it started /init (seen about once
		// in 35 boots: a fault in the kernel's own early init under
		// multi-threaded TCG). Nothing of the disk or of ours ran, so one
		// retry of the same boot is a fair re-measurement, not a hidden
		// failure of ours; it is logged so the flake stays visible.
		t.Logf("guest kernel crashed before starting /init (TCG flake, log %s); booting once more", rep.LogPath)
		rep = bootOnce(t, in, spec)
	}
	return rep
}

// earlyKernelCrash reports whether the console shows a kernel panic before
// the kernel handed over to /init.
func earlyKernelCrash(lines []string) bool {
	for _, l := range lines {
		if strings.Contains(l, "Run /init as init process") {
			return false
		}
		if strings.Contains(l, "Kernel panic") {
			return true
		}
	}
	return false
}

// baseCmdline is BaseCmdline with the serial console of in's architecture
// (ttyS0 on the PC, ttyAMA0, the PL011, on arm64's virt board).
func (in *Inputs) baseCmdline() string {
	return strings.Replace(BaseCmdline, "console=ttyS0", "console="+in.arch().console, 1)
}

func bootOnce(t testing.TB, in *Inputs, spec BootSpec) *Report {
	t.Helper()
	if spec.Timeout == 0 {
		spec.Timeout = 5 * time.Minute
	}
	logDir := filepath.Join(os.TempDir(), "ext-setup-root-qemu-logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	base := strings.NewReplacer("/", "_").Replace(t.Name())
	var logPath string
	for n := 1; ; n++ {
		logPath = filepath.Join(logDir, fmt.Sprintf("%s-%d.log", base, n))
		if _, err := os.Stat(logPath); os.IsNotExist(err) {
			break
		}
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()

	ctx, cancel := context.WithTimeout(context.Background(), spec.Timeout)
	defer cancel()
	ga := in.arch()
	args := append(append([]string{}, ga.machine...),
		"-accel", "tcg,thread=multi", "-smp", "2", "-m", "1536",
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot", "-nic", nic(spec),
		"-kernel", in.Vmlinux, "-initrd", spec.Initrd,
		"-drive", "file="+spec.Disk+",format=raw,if=virtio,cache=unsafe",
		"-append", strings.TrimSpace(in.baseCmdline()+" "+spec.Cmdline),
	)
	if os.Getenv("EXT_SETUP_ROOT_QEMU_DEBUG") == "1" {
		args[len(args)-1] += " systemd.journald.forward_to_console=1"
	}
	for _, d := range spec.Drives {
		args = append(args, "-drive", "file="+d+",format=raw,if=virtio,cache=unsafe")
	}
	cmd := exec.CommandContext(ctx, in.QEMU, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	fmt.Fprintf(logf, "# %s %s\n", in.QEMU, strings.Join(args, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	// An emergency shell waits forever: stop QEMU as soon as it shows.
	var cutOnce sync.Once
	cutAt := make(chan time.Time, 1)
	cut := func() {
		cutOnce.Do(func() {
			cutAt <- time.Now()
			cmd.Process.Signal(syscall.SIGKILL)
		})
	}
	rep := parseConsole(io.TeeReader(out, logf), func(line string) {
		if strings.Contains(line, "Entering emergency mode") || strings.Contains(line, "Kernel panic") {
			time.AfterFunc(3*time.Second, cancel)
		}
		if spec.OnLine != nil {
			spec.OnLine(line, cut)
		}
	})
	waitErr := cmd.Wait()
	select {
	case at := <-cutAt:
		rep.Cut, rep.CutAfter = true, at.Sub(start)
		fmt.Fprintf(logf, "# power cut (SIGKILL to QEMU) %.3f s after QEMU start\n", rep.CutAfter.Seconds())
	default:
	}
	rep.Wall = time.Since(start)
	rep.LogPath = logPath
	rep.TimedOut = ctx.Err() == context.DeadlineExceeded
	t.Logf("boot: %.1f s wall (QEMU start to exit), guest uptime at report %s s, log %s", rep.Wall.Seconds(), rep.Get("uptime"), logPath)
	if rep.TimedOut {
		t.Fatalf("QEMU timed out after %v; last console lines:\n%s\nfull log: %s", spec.Timeout, rep.Tail(40), logPath)
	}
	if ctx.Err() == context.Canceled {
		t.Logf("QEMU stopped: the guest entered an emergency shell or panicked (set EXT_SETUP_ROOT_QEMU_DEBUG=1 to forward the journal to the console)")
	}
	if waitErr != nil {
		t.Logf("qemu exited: %v", waitErr)
	}
	return rep
}

// nic returns the -nic value of spec: none unless the test gave one.
func nic(spec BootSpec) string {
	if spec.NIC == "" {
		return "none"
	}
	return spec.NIC
}

// parseConsole reads the serial console to EOF and collects the reporter's
// marker lines. Markers are found anywhere in a line (not anchored) because
// systemd's terminal probing can prefix escape sequences.
func parseConsole(r io.Reader, watch func(string)) *Report {
	rep := &Report{Values: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		rep.Lines = append(rep.Lines, line)
		rep.add(line)
		watch(line)
	}
	return rep
}

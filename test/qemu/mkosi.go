package qemu

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// The mkosi example image (examples/mkosi, built by make mkosi-image into
// $cache/mkosi): a GPT disk booted through UEFI firmware (OVMF), systemd-boot
// and a UKI, with mkosi's systemd initrd. Its ESP holds two UKIs of the same
// kernel and initrd: one with ext-setup-root's stages (the default entry),
// one without them, where systemd's own sysroot units merge the default
// confext. A boot picks one by rewriting loader/loader.conf on a copy of
// the disk.

// Mkosi variants: which UKI systemd-boot starts.
const (
	MkosiOurs    = "ours"    // ext-setup-root's initrd stages
	MkosiSystemd = "systemd" // systemd-confext-sysroot.service and friends
)

// MkosiImage is the cached image and what its manifest says about it.
type MkosiImage struct {
	Disk      string
	ESPOffset int64             // byte offset of the ESP on the disk
	Entries   map[string]string // variant -> UKI file name in EFI/Linux
	OVMFCode  string
	OVMFVars  string
	QEMU      string
}

// mkosiOVMF are the OVMF builds tried, Debian's ovmf package (4 MiB
// flash first, as Debian 12 and later ship).
var mkosiOVMF = [][2]string{
	{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
}

// RequireMkosi gates t on root, QEMU, OVMF, mtools and the image of make
// mkosi-image; it skips (or fails under EXT_SETUP_ROOT_REQUIRE_ALL=1)
// naming what is missing.
func RequireMkosi(t testing.TB) *MkosiImage {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU boot tests are not short")
	}
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "qemu-system-x86_64", "mcopy", "cp")
	m := &MkosiImage{Entries: map[string]string{}}
	for _, f := range mkosiOVMF {
		if _, err := os.Stat(f[0]); err == nil {
			m.OVMFCode, m.OVMFVars = f[0], f[1]
			break
		}
	}
	if m.OVMFCode == "" {
		testutil.Gate(t, "OVMF firmware (%s; package ovmf, scripts/ci-deps.sh)", mkosiOVMF[0][0])
		return nil
	}
	dir := filepath.Join(cacheBase(), "mkosi")
	f, err := os.Open(filepath.Join(dir, "manifest.txt"))
	if err != nil {
		testutil.Gate(t, "the mkosi image (run make mkosi-image): %v", err)
		return nil
	}
	defer f.Close()
	kv, err := readManifest(f)
	if err != nil {
		t.Fatalf("%s: %v", f.Name(), err)
	}
	m.Disk = filepath.Join(dir, kv["disk"])
	m.ESPOffset, err = strconv.ParseInt(kv["esp_offset"], 10, 64)
	if err != nil || m.ESPOffset <= 0 {
		t.Fatalf("%s: esp_offset=%q is not a positive byte offset", f.Name(), kv["esp_offset"])
	}
	for _, v := range []string{MkosiOurs, MkosiSystemd} {
		e := kv["entry_"+v]
		if e == "" || strings.ContainsAny(e, "/\n") {
			t.Fatalf("%s: entry_%s=%q is not a UKI file name", f.Name(), v, e)
		}
		m.Entries[v] = e
	}
	if _, err := os.Stat(m.Disk); err != nil {
		testutil.Gate(t, "the mkosi image (run make mkosi-image): %v", err)
		return nil
	}
	m.QEMU, _ = exec.LookPath("qemu-system-x86_64")
	return m
}

// readManifest reads manifest.txt's key=value lines (at most 64 KiB).
func readManifest(r io.Reader) (map[string]string, error) {
	kv := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		kv[k] = v
	}
	return kv, sc.Err()
}

// Copy returns a private copy of the disk (sparse) whose systemd-boot
// default entry is the UKI of variant, and a copy of the OVMF variables:
// a boot writes to both, the cached image stays as built.
func (m *MkosiImage) Copy(t testing.TB, variant string) (disk, vars string) {
	t.Helper()
	entry, ok := m.Entries[variant]
	if !ok {
		t.Fatalf("unknown mkosi variant %q", variant)
	}
	dir := t.TempDir()
	disk, vars = filepath.Join(dir, "disk.raw"), filepath.Join(dir, "OVMF_VARS.fd")
	run(t, "cp", "--sparse=always", m.Disk, disk)
	run(t, "cp", m.OVMFVars, vars)
	conf := filepath.Join(dir, "loader.conf")
	// timeout 0: no menu; the default is booted at once.
	if err := os.WriteFile(conf, []byte("timeout 0\ndefault "+entry+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "mcopy", "-o", "-i", fmt.Sprintf("%s@@%d", disk, m.ESPOffset), conf, "::loader/loader.conf")
	return disk, vars
}

// BootMkosi boots disk (a Copy) with OVMF until the guest powers off or
// timeout passes, and returns the parsed serial console. The QEMU command
// line is the firmware, the disk and the usual TCG settings of Boot; the
// raw log goes to $TMPDIR/ext-setup-root-qemu-logs like Boot's.
// extra are further QEMU arguments (the measured boots add a TPM).
func BootMkosi(t testing.TB, m *MkosiImage, disk, vars string, timeout time.Duration, extra ...string) *Report {
	t.Helper()
	logDir := filepath.Join(os.TempDir(), "ext-setup-root-qemu-logs")
	mkdirs(t, logDir)
	logf, err := os.CreateTemp(logDir, strings.NewReplacer("/", "_").Replace(t.Name())+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{
		"-machine", "q35", "-accel", "tcg,thread=multi", "-smp", "2", "-m", "1536",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nic", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + m.OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "file=" + disk + ",format=raw,if=virtio,cache=unsafe",
	}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, m.QEMU, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	fmt.Fprintf(logf, "# %s %s\n", m.QEMU, strings.Join(args, " "))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	rep := parseConsole(io.TeeReader(out, logf), func(line string) {
		if strings.Contains(line, "Entering emergency mode") || strings.Contains(line, "Kernel panic") {
			time.AfterFunc(3*time.Second, cancel)
		}
	})
	waitErr := cmd.Wait()
	rep.Wall, rep.LogPath = time.Since(start), logf.Name()
	rep.TimedOut = ctx.Err() == context.DeadlineExceeded
	t.Logf("boot: %.1f s wall (QEMU start to exit), guest uptime at report %s s, log %s", rep.Wall.Seconds(), rep.Get("uptime"), rep.LogPath)
	if rep.TimedOut {
		t.Fatalf("QEMU timed out after %v; last console lines:\n%s\nfull log: %s", timeout, rep.Tail(40), rep.LogPath)
	}
	if waitErr != nil {
		t.Logf("qemu exited: %v", waitErr)
	}
	return rep
}

package qemu

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/extension/image"
	"github.com/ext-setup-root/ext-setup-root/internal/measure"
)

// tamperPattern fills a confext file whose data blocks are then altered
// in the image: 64 KiB, so the file has data blocks of its own (erofs
// inlines only a short tail), and recognisable.
var tamperPattern = strings.Repeat("extsr-verity-tamper-0123456789abcdef-", 1800)

// TestQEMUDMVerity runs package image's device-mapper verity set-up
// against the real forky kernel in a minimal guest: a static Go /init
// (test/qemu/dminit) with the dm, loop and erofs modules and two signed
// DDIs in a plain initramfs, no disk, no systemd (one boot: seconds). It
// checks, in the kernel: systemd 262's device name and dm uuid, the
// kernel's signature check failing for lack of the key and the userspace
// fallback, an altered data block read as EIO, a rejected signature
// leaving no device and no loop device, reuse by root hash, and deferred
// removal releasing device and loop devices after the unmount.
func TestQEMUDMVerity(t *testing.T) {
	in := RequireInputs(t)
	vendor := TestKey(t, "vendor")
	dir := t.TempDir()
	tree := filepath.Join(dir, "initramfs")
	mkdirs(t, tree, "images", "mnt")
	good := filepath.Join(tree, "images/good.raw")
	Ext{Name: "good", Confext: true, Files: map[string]string{"etc/extsr/data.bin": tamperPattern, "etc/extsr/small.conf": "small\n"}}.
		BuildDDI(t, good, DDIOptions{Key: &vendor})
	tampered := filepath.Join(tree, "images/tampered.raw")
	run(t, "cp", good, tampered)
	off := FindInImage(t, tampered, tamperPattern[:4096])
	FlipByte(t, tampered, off+40000-(40000%37)+19)

	// /init: the static test program.
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(tree, "init"), "./dminit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dminit: %v\n%s", err, out)
	}
	copyModules(t, in, tree, "loop", "erofs", "dm_verity")
	img := filepath.Join(dir, "initramfs.cpio")
	run(t, "sh", "-c", "cd "+tree+" && find . | cpio -o -H newc --quiet -R 0:0 > "+img)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	q := exec.CommandContext(ctx, in.QEMU, "-cpu", "qemu64,+rdrand", "-accel", "tcg,thread=multi", "-smp", "2", "-m", "768",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nic", "none",
		"-kernel", in.Vmlinux, "-initrd", img, "-append", "console=ttyS0 panic=-1 quiet")
	out, err := q.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		lines = append(lines, l)
		if i := strings.Index(l, "DMTEST "); i >= 0 {
			k, v, _ := strings.Cut(l[i+len("DMTEST "):], "=")
			vals[k] = strings.TrimRight(v, "\r")
		}
	}
	q.Wait()
	t.Logf("minimal dm guest: %.1f s wall", time.Since(start).Seconds())
	if vals["done"] != "1" {
		t.Fatalf("guest did not finish; console:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
	}
	for _, k := range []string{"good_setup", "good_read", "good_ms", "tampered_read", "badsig_setup", "reuse_second", "dm_good_mounted", "dm_end", "loops_end", "good_removal_ms", "tampered_removal_ms", "reuse_removal_ms"} {
		t.Logf("%s = %s", k, vals[k])
	}
	nameRE := regexp.MustCompile(`^ok name=(loop\d+p1-\d+-verity) uuid=CRYPT-VERITY-[0-9a-f]{32}-(\S+) signed=userspace reused=false verified=1$`)
	if m := nameRE.FindStringSubmatch(vals["good_setup"]); m == nil || m[1] != m[2] {
		t.Errorf("good image: %q, want systemd's loopNp1-K-verity name, CRYPT-VERITY uuid, the kernel check failing (no key) and one userspace verification", vals["good_setup"])
	}
	if want := fmt.Sprintf("bytes=%d err=<nil> altered=0", len(tamperPattern)); vals["good_read"] != want {
		t.Errorf("good image read: %q, want %q", vals["good_read"], want)
	}
	if v := vals["tampered_read"]; !strings.Contains(v, "input/output error") || !strings.HasSuffix(v, "altered=0") {
		t.Errorf("tampered image read: %q, want EIO and never the altered bytes", v)
	}
	if v := vals["badsig_setup"]; !strings.HasPrefix(v, "error ") || !strings.Contains(v, "test verifier rejects") {
		t.Errorf("rejected signature: %q", v)
	}
	for _, k := range []string{"dm_badsig_after_error", "dm_good_unmounted", "dm_tampered_unmounted", "dm_reuse_unmounted", "dm_end"} {
		if !strings.HasPrefix(vals[k], "0") {
			t.Errorf("%s: %q, want no device-mapper device left", k, vals[k])
		}
	}
	for _, k := range []string{"badsig_loops_after_error", "good_loops_unmounted", "loops_end"} {
		if vals[k] != "0" {
			t.Errorf("%s: %q loop devices left, want 0", k, vals[k])
		}
	}
	if !strings.HasPrefix(vals["reuse_second"], "ok ") || !strings.HasSuffix(vals["reuse_second"], "reused=true") || !strings.HasPrefix(vals["dm_reuse_mounted"], "1 ") {
		t.Errorf("reuse: second %q, devices while mounted %q", vals["reuse_second"], vals["dm_reuse_mounted"])
	}
	checkMeasured(t, vals, good)
	if t.Failed() {
		t.Logf("console:\n%s", strings.Join(lines, "\n"))
	}
}

// checkMeasured: each new activation in the guest asked io.systemd.PCRExtend
// (dminit's stand-in) for systemd's verity measurement, with the real
// device's name, the root hash and the signature's signers (the signature
// was part of the activation); the failed set-up and the reused device
// asked nothing.
func checkMeasured(t *testing.T, vals map[string]string, good string) {
	t.Helper()
	for _, k := range []string{"good_measured", "tampered_measured", "badsig_measured", "reuse_measured"} {
		t.Logf("%s = %s", k, vals[k])
	}
	name := regexp.MustCompile(`name=(\S+)`).FindStringSubmatch(vals["good_setup"])
	rh, _, _ := strings.Cut(vals["good_roothash"], " ")
	f, err := os.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	d, err := image.Dissect(f, st.Size(), image.DissectOptions{})
	if err != nil || name == nil {
		t.Fatalf("dissect %s on the host: %v (guest set-up %q)", good, err, vals["good_setup"])
	}
	want, err := measure.VerityWord(name[1], d.Verity.RootHash, d.Verity.Signature.PKCS7)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(d.Verity.RootHash) != rh || strings.HasSuffix(want, ":") {
		t.Fatalf("host root hash %x vs guest %s, word %s", d.Verity.RootHash, rh, want)
	}
	if got := vals["good_measured"]; got != "1 "+want {
		t.Errorf("good image measured %q, want %q", got, "1 "+want)
	}
	if !strings.HasPrefix(vals["tampered_measured"], "1 verity:") {
		t.Errorf("tampered image (activated; blocks fail only when read): measured %q, want one word", vals["tampered_measured"])
	}
	if strings.TrimSpace(vals["badsig_measured"]) != "0" {
		t.Errorf("refused signature: measured %q, want nothing", vals["badsig_measured"])
	}
	if v := vals["reuse_measured"]; !strings.HasPrefix(v, "1 verity:") {
		t.Errorf("activation then reuse: measured %q, want one word (the reuse is not measured)", v)
	}
	for _, k := range []string{"pcrextend", "good_other_calls", "reuse_other_calls"} {
		if v, ok := vals[k]; ok {
			t.Errorf("%s: %s", k, v)
		}
	}
}

// copyModules copies the named modules and their dependencies (from the
// cached kernel's modules.dep) into tree/lib/modules/KVER with a
// modules.dep listing just them.
func copyModules(t *testing.T, in *Inputs, tree string, names ...string) {
	t.Helper()
	src := filepath.Join(in.Modules, in.KVer)
	dep, err := os.ReadFile(filepath.Join(src, "modules.dep"))
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{} // normalised name -> line
	for _, l := range strings.Split(string(dep), "\n") {
		mod, _, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		b := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(mod), ".xz"), ".zst"), ".ko")
		lines[strings.ReplaceAll(b, "-", "_")] = l
	}
	dst := filepath.Join(tree, "lib/modules", in.KVer)
	var out strings.Builder
	done := map[string]bool{}
	for _, n := range names {
		l, ok := lines[n]
		if !ok {
			continue // built in
		}
		out.WriteString(l + "\n")
		mod, deps, _ := strings.Cut(l, ":")
		for _, f := range append([]string{mod}, strings.Fields(deps)...) {
			if done[f] {
				continue
			}
			done[f] = true
			mkdirs(t, filepath.Dir(filepath.Join(dst, f)))
			run(t, "cp", filepath.Join(src, f), filepath.Join(dst, f))
		}
	}
	writeFile(t, dst, "modules.dep", out.String(), 0o644)
}

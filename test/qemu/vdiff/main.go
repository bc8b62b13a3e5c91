// Command vdiff is the in-guest differential of the QEMU scenario
// TestQEMUVerityVsSysroot (issue 7): the host has no device-mapper, so the
// comparison of our merge of a signed dm-verity confext with systemd 262's
// runs in the booted guest, with the real systemd-confext, the real
// dm-verity and the same image file.
//
// Usage: vdiff IMAGE
//
// It builds a scratch root in a directory under /var/lib: the guest's os-release,
// Flatcar's layout (/var/lib/extensions.mutable/etc -> /etc), one file of
// the root's own /etc, a copy of IMAGE (a signed DDI) as
// /usr/lib/confexts/ (same name) and a directory confext over it.
// Then, as the host differential in test/systemd262 does:
//
//  1. systemd-confext --root --mutable=auto merge; snapshot; its own
//     refresh must skip; systemd unmerges.
//  2. ext-setup-root confext --root --mutable=auto merge; snapshot; the
//     snapshots (tree, metadata files, origin record with the verity hash,
//     mount shapes) must be equal (systemd262.Diff); systemd's refresh
//     must skip on our merge; we unmerge.
//  3. After each unmerge no device-mapper device is left beyond those the
//     guest had before (deferred removal released them).
//  4. A stand-in io.systemd.PCRExtend (measure.go) records the verity
//     measurements both ask for: each of systemd's words must equal the
//     word our code builds for the image with systemd's device name.
//
// It prints "EXTSR-RESULT key=value" lines: vdiff_origin_systemd,
// vdiff_origin_ours, one vdiff_err per problem, and vdiff=ok or
// vdiff=failed last.
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ext-setup-root/ext-setup-root/test/qemu/pcrstub"
	"github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

var failed bool

func r(k, v string) { fmt.Printf("EXTSR-RESULT %s=%s\n", k, strings.ReplaceAll(v, "\n", " ")) }

func fail(f string, a ...any) {
	failed = true
	r("vdiff_err", fmt.Sprintf(f, a...))
}

func run(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func write(root, p, content string) error {
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, []byte(content), 0o644)
}

// dmDevices lists the device-mapper device names the kernel has.
func dmDevices() map[string]bool {
	m := map[string]bool{}
	ents, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	for _, e := range ents {
		if b, err := os.ReadFile(e); err == nil {
			m[strings.TrimSpace(string(b))] = true
		}
	}
	return m
}

// leftOver lists the device-mapper devices that were not there before,
// after waiting up to five seconds: a deferred removal completes when the
// last detached mount of the device is freed, which the kernel may finish
// just after umount returned.
func leftOver(before map[string]bool) []string {
	var extra []string
	for i := 0; i < 50; i++ {
		extra = extra[:0]
		for n := range dmDevices() {
			if !before[n] {
				extra = append(extra, n)
			}
		}
		if len(extra) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return extra
}

func buildRoot(root, image string) error {
	if err := copyFile("/usr/lib/os-release", filepath.Join(root, "usr/lib/os-release"), 0o644); err != nil {
		return err
	}
	// Same name as the original: the image's extension-release file is
	// named after it, and both tools refuse a mismatch.
	if err := copyFile(image, filepath.Join(root, "usr/lib/confexts", filepath.Base(image)), 0o644); err != nil {
		return err
	}
	// systemd-confext 262 with --root= reads the verity.d certificates
	// below that root (with none there it falls back to plain verity under
	// its default policy); ext-setup-root reads the running system's only.
	// The guest's certificates go to both places, so both tools check the
	// signature.
	for _, d := range []string{"/etc/verity.d", "/run/verity.d", "/usr/lib/verity.d"} {
		crts, _ := filepath.Glob(filepath.Join(d, "*.crt"))
		for _, c := range crts {
			if err := copyFile(c, filepath.Join(root, "usr/lib/verity.d", filepath.Base(c)), 0o644); err != nil {
				return err
			}
		}
	}
	if err := write(root, "etc/vdiff-own.conf", "the root's own /etc file\n"); err != nil {
		return err
	}
	if err := write(root, "etc/confexts/50-vdiff-dir/etc/extension-release.d/extension-release.50-vdiff-dir", "ID=_any\n"); err != nil {
		return err
	}
	if err := write(root, "etc/confexts/50-vdiff-dir/etc/vdiff-dir.conf", "from the directory confext\n"); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/extensions.mutable"), 0o755); err != nil {
		return err
	}
	return os.Symlink("/etc", filepath.Join(root, "var/lib/extensions.mutable/etc"))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: vdiff IMAGE")
		os.Exit(2)
	}
	image := os.Args[1]
	// Not under /run: systemd-confext 262 builds the overlay in a child
	// mount namespace where /run is a slave (so its temporary mounts stay
	// there) and the finished merge reaches the caller's namespace by
	// propagation; a merge onto a target under /run never shows up
	// outside the child. The root file system is shared, as systemd
	// sets it up.
	base := "/var/lib/extsr-vdiff"
	if err := os.MkdirAll(base, 0o755); err != nil {
		fail("mkdir %s: %v", base, err)
	}
	// Removed only after a clean run: after a failed unmerge a merge may
	// still sit on the scratch root's /etc.
	defer func() {
		if !failed {
			os.RemoveAll(base)
		}
	}()
	root := filepath.Join(base, "root")
	if err := buildRoot(root, image); err != nil {
		fail("scratch root: %v", err)
	}
	// Both merges activate the image's verity device; each must ask for
	// the same measurement (measure.go).
	stub := startStub()
	if stub != nil {
		defer stub.Close()
	}
	d := &diffRun{root: root, rootArg: "--root=" + root, stub: stub, before: dmDevices()}
	if !failed {
		d.systemdRound()
	}
	if d.sdSnap != nil {
		r("vdiff_origin_systemd", d.sdSnap.OriginJSON())
		d.ourRound()
	}
	d.compare(image)
	if failed {
		r("vdiff", "failed")
	} else {
		r("vdiff", "ok")
	}
}

// diffRun is the state of one differential: the scratch root, the
// measurement stub, the device-mapper devices before any merge, and each
// tool's snapshot and measurement words.
type diffRun struct {
	root, rootArg     string
	stub              *pcrstub.Stub
	before            map[string]bool
	sdWords, ourWords []string
	sdSnap, ourSnap   *systemd262.Snapshot
}

// systemdRound is step 1: systemd-confext merges (with its debug log on
// failure), the merge is snapshotted, its own refresh must skip, and its
// unmerge must leave no device-mapper device.
func (d *diffRun) systemdRound() {
	if out, err := run("systemd-confext", d.rootArg, "--mutable=auto", "merge"); err != nil {
		fail("systemd-confext merge: %v: %s", err, out)
		// Once more with systemd's debug log, for the reason.
		dbg, _ := exec.Command("env", "SYSTEMD_LOG_LEVEL=debug", "systemd-confext", d.rootArg, "--mutable=auto", "merge").CombinedOutput()
		for _, l := range strings.Split(string(dbg), "\n") {
			if l != "" {
				r("vdiff_sd_debug", l)
			}
		}
		run("systemd-confext", d.rootArg, "unmerge")
	} else {
		r("vdiff_sd_merge", out)
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			for _, l := range strings.Split(string(mi), "\n") {
				if strings.Contains(l, "extsr-vdiff") {
					r("vdiff_sd_mount", l)
				}
			}
		}
		s, err := systemd262.TakeSnapshot(d.root)
		if err != nil {
			fail("snapshot of systemd's merge: %v", err)
		}
		d.sdSnap = s
		d.sdWords = takeWords(d.stub, "systemd")
		if out, err := run("systemd-confext", d.rootArg, "--mutable=auto", "refresh"); err != nil || !strings.Contains(out, systemd262.SkipMessage) {
			fail("harness: systemd's refresh of its own merge did not skip: %v: %s", err, out)
		}
		takeWords(d.stub, "systemd_refresh")
		if out, err := run("systemd-confext", d.rootArg, "unmerge"); err != nil {
			fail("systemd-confext unmerge: %v: %s", err, out)
		}
		takeWords(d.stub, "systemd_unmerge")
	}
	if extra := leftOver(d.before); len(extra) > 0 {
		fail("after systemd's unmerge device-mapper devices are left: %v", extra)
	}
}

// ourRound is step 2: ext-setup-root merges, the merge is snapshotted,
// systemd's refresh must skip on it, and our unmerge must leave no
// device-mapper device.
func (d *diffRun) ourRound() {
	if out, err := run("ext-setup-root", "confext", d.rootArg, "--mutable=auto", "merge"); err != nil {
		fail("ext-setup-root merge: %v: %s", err, out)
	} else {
		s, err := systemd262.TakeSnapshot(d.root)
		if err != nil {
			fail("snapshot of our merge: %v", err)
		}
		d.ourSnap = s
		d.ourWords = takeWords(d.stub, "ours")
		if out, err := run("systemd-confext", d.rootArg, "--mutable=auto", "refresh"); err != nil || !strings.Contains(out, systemd262.SkipMessage) {
			fail("systemd-confext refresh after our merge did not skip: %v: %s", err, out)
		}
		takeWords(d.stub, "systemd_refresh_of_ours")
		if out, err := run("ext-setup-root", "confext", d.rootArg, "unmerge"); err != nil {
			fail("ext-setup-root unmerge: %v: %s", err, out)
		}
	}
	if extra := leftOver(d.before); len(extra) > 0 {
		fail("after our unmerge device-mapper devices are left: %v", extra)
	}
}

// compare is steps 2 and 4's verdicts: the two snapshots must be equal
// (our origin with the verity hash), and the measurement words too.
func (d *diffRun) compare(image string) {
	if d.sdSnap == nil || d.ourSnap == nil {
		return
	}
	r("vdiff_origin_ours", d.ourSnap.OriginJSON())
	r("vdiff_files", fmt.Sprintf("%d", len(d.ourSnap.Tree)))
	if !strings.Contains(d.ourSnap.OriginJSON(), "verityHash") {
		fail("our origin has no verityHash: %s", d.ourSnap.OriginJSON())
	}
	for _, df := range systemd262.Diff(d.sdSnap, d.ourSnap, "systemd", "ours") {
		fail("%s", df)
	}
	if d.stub != nil {
		compareWords(image, d.sdWords, d.ourWords)
	}
}

package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Partition numbers and GPT type GUIDs follow Flatcar's disk layout
// (build_library/disk_layout.json): USR-A 3, USR-B 4, OEM 6, ROOT 9. There is
// no ESP or BIOS-boot partition because QEMU boots -kernel/-initrd directly.
const (
	partUSRA = 3
	partUSRB = 4
	partOEM  = 6
	partROOT = 9

	typeUSR  = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6" // CoreOS /usr
	typeRoot = "3884DD41-8582-4404-B9A8-E9B84F2DF50E" // CoreOS resizable root
	typeData = "0FC63DAF-8483-4772-8E79-3D69D8477DE4" // Linux filesystem (OEM)
)

// OEMID is the OEM identity of the test images.
const OEMID = "test"

// Slot versions: USR-A carries VersionA, USR-B VersionB (an "update").
const (
	VersionA = "1000.0.0"
	VersionB = "1001.0.0"
)

// guestModules are the kernel module directories copied into the test /usr:
// enough for the booted system to loop-mount squashfs/erofs images and build
// overlays (systemd-confext, systemd-sysext); the rest of the 180 MB module
// tree stays out to keep the image small.
var guestModules = []string{"kernel/fs", "kernel/lib", "kernel/crypto", "kernel/block", "kernel/drivers/block", "kernel/drivers/md", "kernel/arch"}

var (
	usrMu    sync.Mutex
	usrCache = map[string]string{} // version (+ "-verity") and kernel -> erofs image
)

// imageFormat changes whenever USRImage's recipe changes in a way the hashed
// inputs do not show, to invalidate cached images.
const imageFormat = "usr-v2"

// USRImage returns an erofs image of the test /usr for version: the forky
// /usr with an os-release carrying the version, a module subset, the reporter
// service and the default confext. It is cached in $cache/usr by a hash of
// its inputs, so only the first run (about 10 s per version) builds it.
func USRImage(t testing.TB, in *Inputs, version string) string {
	t.Helper()
	return usrImage(t, in, version, false)
}

// usrImage builds the /usr image; with verity the default confext is a
// signed DDI (systemd-repart --make-ddi=confext, Flatcar's recipe) signed
// by the "vendor" test key, whose certificate the image ships in
// /usr/lib/verity.d for the booted systemd-confext.
func usrImage(t testing.TB, in *Inputs, version string, verity bool) string {
	t.Helper()
	var vendor SigningKey
	if verity {
		vendor = TestKey(t, "vendor") // before usrMu: it has its own lock
	}
	usrMu.Lock()
	defer usrMu.Unlock()
	key := version
	if verity {
		key += "-verity"
	}
	// One image per kernel too: /usr carries that kernel's modules.
	mkey := key + "|" + in.KVer + "|" + in.Rootfs
	if p, ok := usrCache[mkey]; ok {
		return p
	}
	// The OS /usr carries what `make install` installs (binary, host
	// drop-ins, confext.conf.d), as a distribution's image would.
	stage, sum := InstallTree(t, in.Arch)
	img := usrImagePath(t, in, version, key, sum, verity, vendor)
	if _, err := os.Stat(img); err == nil {
		usrCache[mkey] = img
		return img
	}
	mkdirs(t, filepath.Dir(img))
	scratch, err := os.MkdirTemp(filepath.Dir(img), "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(scratch)
	tree := filepath.Join(scratch, "usr")
	run(t, "cp", "-a", "--reflink=auto", filepath.Join(in.Rootfs, "usr"), tree)
	run(t, "cp", "-a", filepath.Join(stage, "usr")+"/.", tree+"/")
	usrOSRelease(t, tree, version, in.arch().board)
	usrModules(t, in, tree, filepath.Join(scratch, "depmod"))
	usrTestUnits(t, tree)
	usrVendorFiles(t, tree, version, verity, vendor)

	tmp := filepath.Join(scratch, "usr.erofs")
	run(t, "mkfs.erofs", "--quiet", "-T0", tmp, tree)
	if err := os.Rename(tmp, img); err != nil {
		t.Fatal(err)
	}
	// [0-9a-f]: the plain image's pattern must not match "-verity-".
	prune(filepath.Join(filepath.Dir(img), "usr-"+key+"-[0-9a-f]*.erofs"), 6)
	usrCache[mkey] = img
	return img
}

// usrImagePath is the cache path of the /usr image: key and a hash of
// every input of usrImage (the install tree's sum, the recipe's format,
// kernel, units, modules, default confext, the rootfs manifest and, with
// verity, the vendor certificate).
func usrImagePath(t testing.TB, in *Inputs, version, key, installSum string, verity bool, vendor SigningKey) string {
	t.Helper()
	h := sha256.New()
	fmt.Fprintf(h, "install=%s\n", installSum)
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n%s\n%v\n%v\n", imageFormat, version, in.KVer, reporterScript, reporterUnit, lateStopUnit, guestModules, DefaultConfext(version))
	if m := in.manifest(); m != nil {
		h.Write(m)
	}
	if verity {
		fmt.Fprintf(h, "verity ddi-v1\n%s", vendor.CertPEM(t))
	}
	return filepath.Join(in.Cache, "usr", "usr-"+key+"-"+hex.EncodeToString(h.Sum(nil))[:16]+".erofs")
}

// usrOSRelease rewrites tree's lib/os-release with version: the version
// is what A/B selection keys on.
func usrOSRelease(t testing.TB, tree, version, board string) {
	t.Helper()
	osr, err := os.ReadFile(filepath.Join(tree, "lib/os-release"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(string(osr)), "\n") {
		if strings.HasPrefix(l, "VERSION=") || strings.HasPrefix(l, "VERSION_ID=") || strings.HasPrefix(l, "VERSION_CODENAME=") {
			continue
		}
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "VERSION=%s\nVERSION_ID=%s\nBUILD_ID=extsr-test\nFLATCAR_BOARD=%s\n", version, version, board)
	os.Remove(filepath.Join(tree, "lib/os-release"))
	writeFile(t, tree, "lib/os-release", b.String(), 0o644)
}

// usrModules copies the guestModules subset of the kernel's modules into
// tree, then runs depmod on it (base: a scratch directory for depmod -b).
func usrModules(t testing.TB, in *Inputs, tree, base string) {
	t.Helper()
	mdir := filepath.Join(tree, "lib/modules", in.KVer)
	mkdirs(t, mdir)
	for _, d := range guestModules {
		src := filepath.Join(in.Modules, in.KVer, d)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		mkdirs(t, filepath.Dir(filepath.Join(mdir, d)))
		run(t, "cp", "-a", src, filepath.Join(mdir, d))
	}
	mkdirs(t, filepath.Join(base, "lib"))
	symlink(t, base, "lib/modules", filepath.Join(tree, "lib/modules"))
	run(t, "depmod", "-b", base, in.KVer)
}

// usrTestUnits installs the reporter and the test units, and enables
// systemd-confext and systemd-sysext as Flatcar does.
func usrTestUnits(t testing.TB, tree string) {
	t.Helper()
	writeFile(t, tree, "libexec/extsr-report", reporterScript, 0o755)
	writeFile(t, tree, "lib/systemd/system/extsr-report.service", reporterUnit, 0o644)
	symlink(t, tree, "lib/systemd/system/multi-user.target.wants/extsr-report.service", "../extsr-report.service")
	writeFile(t, tree, "lib/systemd/system/extsr-late-stop.service", lateStopUnit, 0o644)
	// Debian ships systemd-confext/-sysext disabled; Flatcar enables both
	// in /usr, and the hand-off to them is what the scenarios check.
	for _, u := range []string{"systemd-confext.service", "systemd-sysext.service"} {
		symlink(t, tree, "lib/systemd/system/sysinit.target.wants/"+u, "../"+u)
	}
}

// usrVendorFiles adds what Flatcar's /usr ships for the boot stages: the
// OEM migration list, the default confext (a signed DDI with verity, its
// certificate in lib/verity.d), the directory copy of its /etc for the
// dedup and the whiteout list.
func usrVendorFiles(t testing.TB, tree, version string, verity bool, vendor SigningKey) {
	t.Helper()
	// The OEM migration list (what a migrate flag deletes), like
	// /usr/share/flatcar/oems/$OEMID in Flatcar.
	writeFile(t, tree, "share/flatcar/oems/"+OEMID, "/etc/extsr-oem-legacy.conf\n", 0o644)

	// The default confext, shipped in /usr like Flatcar's.
	if verity {
		DefaultConfext(version).BuildDDI(t, filepath.Join(tree, "lib/confexts/00-flatcar-default.raw"), DDIOptions{Key: &vendor})
		writeFile(t, tree, "lib/verity.d/extsr-vendor.crt", vendor.CertPEM(t), 0o644)
	} else {
		DefaultConfext(version).Build(t, filepath.Join(tree, "lib/confexts/00-flatcar-default.raw"))
	}

	// Flatcar keeps a directory copy of the default confext's /etc for the
	// dedup of the prepare step, and lists the whiteouts it repairs.
	for p, c := range DefaultConfext(version).Files {
		writeFile(t, tree, "share/flatcar/"+p, c, 0o644)
	}
	writeFile(t, tree, "share/flatcar/etc-no-whiteouts", "/etc/extsr/defaults/listed.conf\n", 0o644)
}

// DefaultConfext is the default confext of a /usr version: it provides
// /etc/extsr/default.conf and /etc/motd, which the ROOT partition's /etc
// does not have.
func DefaultConfext(version string) Ext {
	return Ext{
		Name:    "00-flatcar-default",
		Confext: true,
		Files: map[string]string{
			"etc/extsr/default.conf": "from-default-confext version=" + version + "\n",
			"etc/motd":               "ext-setup-root test image " + version + "\n",
			// Vendor defaults for the prepare step's scenarios (prepare_test.go).
			"etc/extsr/defaults/same.conf":        "same default version=" + version + "\n",
			"etc/extsr/defaults/user.conf":        "user default\n",
			"etc/extsr/defaults/deleted.conf":     "deleted default\n",
			"etc/extsr/defaults/listed.conf":      "listed default\n",
			"etc/extsr/defaults/nodup.conf":       "nodup default version=" + version + "\n",
			"etc/extsr/defaults/recreated/a.conf": "a default\n",
			"etc/extsr/defaults/recreated/b.conf": "b default\n",
		},
	}
}

// RootTree stages the ROOT partition: the forky root without /usr content
// (the merged-usr symlinks /bin -> usr/bin etc. stay), /etc minus what the
// default confext provides, a fixed machine-id, a passwordless root, and the
// directories the extension layout uses. Scenarios add files before Disk.
func RootTree(t testing.TB, in *Inputs) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "root")
	mkdirs(t, tree)
	ents, err := os.ReadDir(in.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == "usr" {
			continue
		}
		run(t, "cp", "-a", "--reflink=auto", filepath.Join(in.Rootfs, e.Name()), filepath.Join(tree, e.Name()))
	}
	mkdirs(t, tree, "usr", "oem", "etc/extensions", "etc/flatcar/sysext", "etc/flatcar/oem-sysext")
	os.Remove(filepath.Join(tree, "etc/motd"))
	// No apt/e2scrub timers in a test VM.
	os.RemoveAll(filepath.Join(tree, "etc/systemd/system/timers.target.wants"))
	// OEM on /oem: the initrd mounts it (sysroot-oem.mount, see initrd.go);
	// the line makes the booted system know the mount.
	writeFile(t, tree, "etc/fstab", "PARTLABEL=OEM /oem ext4 defaults 0 0\n", 0o644)
	// Services with nothing to do in a throw-away test VM that still cost
	// seconds each under TCG on a first boot (ConditionNeedsUpdate and
	// friends): masked.
	for _, u := range []string{"ldconfig.service", "systemd-hwdb-update.service", "systemd-journal-catalog-update.service",
		"systemd-update-done.service", "e2scrub_reap.service", "systemd-pstore.service"} {
		symlink(t, tree, "etc/systemd/system/"+u, "/dev/null")
	}
	// Quiet serial console: no getty between the reporter's lines.
	symlink(t, tree, "etc/systemd/system/serial-getty@"+in.arch().console+".service", "/dev/null")
	symlink(t, tree, "etc/systemd/system/getty@tty1.service", "/dev/null")
	writeFile(t, tree, "etc/machine-id", "4c1d2b0d1f9e4f7f8a3b1c2d3e4f5a6b\n", 0o444)
	writeFile(t, tree, "etc/hostname", "extsr-test\n", 0o644)
	shadow, err := os.ReadFile(filepath.Join(tree, "etc/shadow"))
	if err == nil {
		lines := strings.Split(string(shadow), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "root:") {
				f := strings.Split(l, ":")
				f[1] = ""
				lines[i] = strings.Join(f, ":")
			}
		}
		writeFile(t, tree, "etc/shadow", strings.Join(lines, "\n"), 0o640)
	}
	return tree
}

// OEMTree stages the OEM partition: oem-release with ID=OEMID.
func OEMTree(t testing.TB) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "oem")
	writeFile(t, tree, "oem-release", "ID="+OEMID+"\nNAME=\"ext-setup-root test OEM\"\n", 0o644)
	mkdirs(t, tree, "sysext")
	return tree
}

// OEMSysext is the OEM extension for version: it ships a service enabled
// through a .wants link inside the image.
func OEMSysext(version string) Ext {
	return Ext{
		Name: "oem-" + OEMID,
		Files: map[string]string{
			"usr/lib/systemd/system/oem-test.service": oemServiceUnit,
			"usr/lib/extsr-ext/oem-" + version:        version + "\n",
		},
		Links: map[string]string{
			"usr/lib/systemd/system/multi-user.target.wants/oem-test.service": "../oem-test.service",
		},
	}
}

// FlatcarSysext is a versioned Flatcar extension flatcar-NAME for version.
func FlatcarSysext(name, version string) Ext {
	return Ext{
		Name:  "flatcar-" + name,
		Files: map[string]string{"usr/lib/extsr-ext/" + name + "-" + version: version + "\n"},
	}
}

// DiskSpec is the content of a test disk.
type DiskSpec struct {
	USRA, USRB string // /usr versions of the slots ("" = empty slot)
	Root       string // staged ROOT tree
	OEM        string // staged OEM tree
	OEMMiB     int    // OEM partition size (default 32)
	// Verity: the slots' default confexts are signed verity DDIs.
	Verity  bool
	RootMiB int // ROOT partition size (default 640)
}

// Disk builds a GPT disk image from spec and returns its path: every
// partition is made as a file (mkfs.erofs for /usr, mkfs.ext4 -d for OEM
// and ROOT) and copied in at its offset, without loop devices or mounts.
func Disk(t testing.TB, in *Inputs, spec DiskSpec) string {
	t.Helper()
	if spec.OEMMiB == 0 {
		spec.OEMMiB = 32
	}
	if spec.RootMiB == 0 {
		spec.RootMiB = 640
	}
	dir := t.TempDir()
	type part struct {
		num      int
		label    string
		typ      string
		sizeMiB  int
		img      string
		startMiB int
	}
	usrPart := func(num int, label, version string) part {
		p := part{num: num, label: label, typ: typeUSR, sizeMiB: 16}
		if version != "" {
			p.img = usrImage(t, in, version, spec.Verity)
			st, err := os.Stat(p.img)
			if err != nil {
				t.Fatal(err)
			}
			p.sizeMiB = int(st.Size()>>20) + 8
		}
		return p
	}
	ext4 := func(label, tree string, sizeMiB int) string {
		img := filepath.Join(dir, label+".ext4")
		run(t, "mkfs.ext4", "-q", "-F", "-L", label, "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", "-d", tree, img, fmt.Sprintf("%dM", sizeMiB))
		return img
	}
	// USR slots get the same size so an update could fit either way.
	a, b := usrPart(partUSRA, "USR-A", spec.USRA), usrPart(partUSRB, "USR-B", spec.USRB)
	if a.sizeMiB < b.sizeMiB {
		a.sizeMiB = b.sizeMiB
	} else {
		b.sizeMiB = a.sizeMiB
	}
	parts := []part{a, b,
		{num: partOEM, label: "OEM", typ: typeData, sizeMiB: spec.OEMMiB, img: ext4("OEM", spec.OEM, spec.OEMMiB)},
		{num: partROOT, label: "ROOT", typ: typeRoot, sizeMiB: spec.RootMiB, img: ext4("ROOT", spec.Root, spec.RootMiB)},
	}
	disk := filepath.Join(dir, "disk.img")
	start, total := 1, 1
	for i := range parts {
		parts[i].startMiB = start
		start += parts[i].sizeMiB
	}
	total = start + 1
	run(t, "truncate", "-s", fmt.Sprintf("%dM", total), disk)
	args := []string{"--clear", "--disk-guid=R"}
	for _, p := range parts {
		args = append(args,
			fmt.Sprintf("--new=%d:%dM:+%dM", p.num, p.startMiB, p.sizeMiB),
			fmt.Sprintf("--typecode=%d:%s", p.num, p.typ),
			fmt.Sprintf("--change-name=%d:%s", p.num, p.label))
	}
	args = append(args, disk)
	run(t, "sgdisk", args...)
	for _, p := range parts {
		if p.img == "" {
			continue
		}
		run(t, "dd", "if="+p.img, "of="+disk, "bs=1M", fmt.Sprintf("seek=%d", p.startMiB), "conv=notrunc,sparse", "status=none")
	}
	return disk
}

// Cmdline is the kernel command line that boots slot ("A" or "B"): /usr from
// the slot's partition, read-only, the root read-write, OEM on /sysroot/oem.
func Cmdline(slot string) string {
	return "mount.usr=PARTLABEL=USR-" + slot + " mount.usrfstype=erofs mount.usrflags=ro root=PARTLABEL=ROOT rootfstype=ext4 rw"
}

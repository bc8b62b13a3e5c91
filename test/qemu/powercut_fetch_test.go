package qemu

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ext-setup-root/ext-setup-root/fetch/payload/payloadtest"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// The fetch scenario of the power cuts (docs/powercut.md): the update
// boot finds slot B's OEM image in no store and downloads it, as in
// TestQEMUFetch, from the test's HTTPS server on the host's loopback
// through a guestfwd relay, so that the power can be cut while the
// download is written and renamed into place. It shares the slot A boot
// of the other cuts: each fetch cut removes the image that boot staged
// from its own copy of the disk (the updater did not download it).

// cutScenario is what one cut's boots need besides the shared disk.
type cutScenario struct {
	images  map[string]string // file name -> checksum of every image after the update
	nic     string            // BootSpec.NIC of every boot ("": none)
	cmdline string            // extra kernel command line of every boot
	// prepare runs on the cut's copy of the disk before its first boot.
	prepare func(t *testing.T, disk string)
	// requests returns the payload requests the server got so far (nil:
	// no server).
	requests func() []string
}

// asked returns how many payload requests the server got so far (0 with
// no server).
func (sc *cutScenario) asked() int {
	if sc.requests == nil {
		return 0
	}
	return len(sc.requests())
}

// stagedOEMB is where the slot A boot's setup step stages slot B's OEM
// image, and where the fetcher places the download (Missing.Dir).
const stagedOEMB = "/etc/flatcar/oem-sysext/oem-" + OEMID + "-" + VersionB + ".raw"

// powercutFetchFiles are the files the fetch scenario adds to the root:
// the fetcher's configuration (the test's payload key, a short retry
// budget, as TestQEMUFetch) and the booted system's network file.
func powercutFetchFiles(t *testing.T, root string) {
	t.Helper()
	writeFile(t, root, "etc/ext-setup-root/boot.toml", fetchBootToml, 0o644)
	writeFile(t, root, "etc/extsr-test/payload-key.pem", string(payloadtest.PublicPEM(payloadtest.KeyA())), 0o644)
}

// fetchScenario starts the payload server and the relay, serves slot B's
// OEM image (6 MiB of incompressible filler, so that writing it takes a
// while under TCG) and returns the scenario: the checksums of base with
// the served image's for slot B's OEM image.
func fetchScenario(t *testing.T, base map[string]string) *cutScenario {
	t.Helper()
	testutil.RequireTool(t, "partx", "losetup", "debugfs", "e2fsck")
	ca := TestFetchCA(t)
	srv := newFetchServer(t, ca)
	e := fetchedOEM(VersionB)
	e.Files["usr/lib/extsr-ext/filler"] = noise(t, 6<<20)
	img := filepath.Join(t.TempDir(), "oem-served.raw")
	e.Build(t, img)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	pl, err := payloadtest.Build(b, payloadtest.Options{Keys: []*rsa.PrivateKey{payloadtest.KeyA()}})
	if err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	srv.payloads["/amd64-usr/"+VersionB+"/"+e.Name+".gz"] = pl
	srv.mu.Unlock()
	images := maps.Clone(base)
	images[filepath.Base(stagedOEMB)] = hex.EncodeToString(h[:])
	relay := filepath.Join(t.TempDir(), "fwdrelay")
	buildGuestTool(t, "./test/qemu/fwdrelay", relay)
	return &cutScenario{
		images:   images,
		nic:      "user,model=virtio-net-pci,restrict=on,guestfwd=tcp:" + fetchIP + ":443-cmd:" + relay + " " + srv.port(),
		cmdline:  "flatcar.release_file_server_url=https://" + fetchIP,
		prepare:  func(t *testing.T, disk string) { removeFromRoot(t, disk, stagedOEMB) },
		requests: srv.served,
	}
}

// removeFromRoot removes the file p from the ROOT partition of the disk
// image with debugfs, on the host, without mounting it. The slot A boot
// powers off without a clean unmount, so its journal is replayed first
// (e2fsck -E journal_only: only what the kernel's mount would replay,
// no other check or repair); debugfs does not replay it. Both work on a
// loop device over the partition: e2fsck loses an image's ?offset= when
// it reopens the file system after the replay.
func removeFromRoot(t *testing.T, disk, p string) {
	t.Helper()
	f := strings.Fields(run(t, "partx", "-g", "-b", "-o", "START,SIZE", "-n", strconv.Itoa(partROOT), disk))
	if len(f) != 2 {
		t.Fatalf("partx: ROOT partition of %s: %q", disk, f)
	}
	sec, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		t.Fatalf("ROOT partition start %q: %v", f[0], err)
	}
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", "--offset", strconv.FormatInt(sec*512, 10), "--sizelimit", f[1], disk))
	defer run(t, "losetup", "-d", dev)
	// Exit status 1: the file system was changed (the journal replayed).
	out, err := exec.Command("e2fsck", "-y", "-E", "journal_only", dev).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
		t.Fatalf("e2fsck -E journal_only on ROOT of %s: %v\n%s", disk, err, out)
	}
	if feat := run(t, "debugfs", "-R", "features", dev); strings.Contains(feat, "needs_recovery") {
		t.Fatalf("ROOT of %s still needs journal recovery after e2fsck (%s): refusing to edit it", disk, strings.TrimSpace(feat))
	}
	run(t, "debugfs", "-w", "-R", "rm "+p, dev)
	if out := run(t, "debugfs", "-R", "stat "+p, dev); !strings.Contains(out, "File not found") {
		t.Fatalf("debugfs did not remove %s from ROOT: %s", p, out)
	}
}

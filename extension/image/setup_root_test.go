package image

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// gptImage writes a GPT disk image with a 2 MiB "data" partition at 1 MiB
// and a 1 MiB "hash" partition at 3 MiB (sgdisk), and returns it with
// its dissection as the dissect code would produce it.
func gptImage(t *testing.T, signed bool) (string, *Dissected) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "sgdisk")
	img := filepath.Join(t.TempDir(), "ext.raw")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 5<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sgdisk", "--new=1:2048:+2M", "--typecode=1:4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
		"--new=2:6144:+1M", "--typecode=2:2c7357ed-ebd2-46d9-aec1-23d437ec2bf5", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	d := &Dissected{
		Data: Partition{Designator: "root", Region: Region{Offset: 1 << 20, Size: 2 << 20}, UUID: "d0cee9af-0535-87f5-6226-91bf5e0c8961", FSType: "erofs"},
		Verity: &Verity{
			Hash:           Region{Offset: 3 << 20, Size: 1 << 20},
			Superblock:     VeritySuperblock{Version: 1, HashType: 1, Algorithm: "sha256", DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 512, Salt: []byte{1, 2}, UUID: "734924d6-5292-f5dd-5212-6a7d5cb80f4d"},
			HashStartBlock: 1,
			RootHash:       mustHex(t, testRootHash),
		},
	}
	if signed {
		d.Verity.Signature = &Signature{PKCS7: []byte("not really PKCS#7")}
	}
	return img, d
}

// loopsBacking lists the loop devices whose backing file is img.
func loopsBacking(img string) []string {
	var out []string
	ents, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, e := range ents {
		b, err := os.ReadFile(e)
		if err == nil && strings.TrimSpace(string(b)) == img {
			out = append(out, strings.Split(e, "/")[3])
		}
	}
	return out
}

// requireNoLoops waits briefly (autoclear runs on the last close) and fails
// t if a loop device still serves img.
func requireNoLoops(t *testing.T, img, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		l := loopsBacking(img)
		if len(l) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: loop devices still attached to the image: %v", what, l)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fakeEnv(f *fakeDM) setupEnv {
	env := defaultEnv
	env.openDM = func(func(string, ...any)) (*DM, error) { return &DM{c: f}, nil }
	env.node = func(uint64) string { return "/dev/null" }
	return env
}

func openImg(t *testing.T, img string) *os.File {
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// The whole set-up against a fake device-mapper and real loop devices:
// names, uuid, table, partition nodes; Mounted releases everything.
func TestSetupVerityLoopsAndTable(t *testing.T) {
	img, d := gptImage(t, false)
	f := newFakeDM()
	dev, err := fakeEnv(f).setup(openImg(t, img), d, SetupOptions{Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	loops := loopsBacking(img)
	switch {
	case len(loops) == 1: // the kernel scanned the GPT: loopNp1, loopNp2
		if !strings.HasPrefix(dev.Name, loops[0]+"p1-") || !strings.HasSuffix(dev.Name, "-verity") {
			t.Errorf("dm name %s, want %sp1-<diskseq>-verity", dev.Name, loops[0])
		}
	case len(loops) == 2: // no GPT support in this kernel: one loop device per partition
		t.Logf("kernel without GPT partition scanning: partitions as separate loop devices %v", loops)
		if !unscannedName.MatchString(dev.Name) {
			t.Errorf("dm name %s, want loopN-<diskseq>-verity", dev.Name)
		}
	default:
		t.Fatalf("loop devices for the image: %v", loops)
	}
	if dev.UUID != "CRYPT-VERITY-734924d65292f5dd52126a7d5cb80f4d-"+dev.Name {
		t.Errorf("dm uuid %s", dev.UUID)
	}
	fd := f.devs[dev.Name]
	if fd == nil || fd.table == nil {
		t.Fatalf("no live table for %s: %+v", dev.Name, f.calls)
	}
	tv, err := parseVerityParams(fd.table.Params)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fd.table.Params, "1 259:") && !strings.HasPrefix(fd.table.Params, "1 7:") {
		t.Errorf("table does not use the partition devices: %s", fd.table.Params)
	}
	if tv.DataBlocks != 512 || tv.HashStart != 1 || fd.table.Length != 512*8 || tv.SigKeyDesc != "" {
		t.Errorf("table %s length %d", fd.table.Params, fd.table.Length)
	}
	for _, p := range strings.Fields(fd.table.Params)[1:3] {
		if _, err := os.Stat("/sys/dev/block/" + p); err != nil {
			t.Errorf("table device %s: %v", p, err)
		}
	}
	fd.open = 1 // the mount holds it
	if err := dev.Mounted(); err != nil {
		t.Fatal(err)
	}
	if !fd.deferred {
		t.Error("Mounted did not arm deferred removal")
	}
	requireNoLoops(t, img, "after Mounted (the fake device holds no partition)")
	if f.closed != 1 {
		t.Errorf("control closed %d times", f.closed)
	}
}

// unscannedName is the dm name of a verity device over a whole loop device
// (no partition scanning): loopN-DISKSEQ-verity. A substring test for "p1-"
// is wrong: "loop1-" contains it.
var unscannedName = regexp.MustCompile(`^loop[0-9]+-[0-9]+-verity$`)

// Every failing step tears down what was set up: no dm device, no loop
// device, the control fd closed.
func TestSetupVerityErrorPaths(t *testing.T) {
	img, d := gptImage(t, false)
	for _, step := range []uint{unix.DM_DEV_CREATE, unix.DM_TABLE_LOAD, unix.DM_DEV_SUSPEND} {
		f := newFakeDM()
		f.fail[step] = unix.EIO
		_, err := fakeEnv(f).setup(openImg(t, img), d, SetupOptions{Name: "ext"})
		if !errors.Is(err, unix.EIO) {
			t.Errorf("%s failing: err %v", dmReqNames[step], err)
		}
		if len(f.devs) != 0 {
			t.Errorf("%s failing: devices left: %v (calls %q)", dmReqNames[step], f.devs, f.calls)
		}
		if f.closed != 1 {
			t.Errorf("%s failing: control closed %d times", dmReqNames[step], f.closed)
		}
		requireNoLoops(t, img, dmReqNames[step]+" failing")
	}
	// The node never appears.
	f := newFakeDM()
	env := fakeEnv(f)
	env.node = func(uint64) string { return "/dev/nonexistent-dm" }
	env.nodeWait = 10 * time.Millisecond
	if _, err := env.setup(openImg(t, img), d, SetupOptions{Name: "ext"}); err == nil || len(f.devs) != 0 {
		t.Errorf("missing node: err %v, devices %v", err, f.devs)
	}
	requireNoLoops(t, img, "missing node")
	// A partition region that is not in the table.
	bad := *d
	bad.Data.Region.Offset += 4096
	f = newFakeDM()
	dev, err := fakeEnv(f).setup(openImg(t, img), &bad, SetupOptions{Name: "ext"})
	switch {
	case err == nil && unscannedName.MatchString(dev.Name):
		// Without partition scanning the region is attached as given
		// (dissection checked it against the table).
		dev.Close()
	case err == nil || len(f.devs) != 0:
		t.Errorf("wrong region: err %v, devices %v", err, f.devs)
	}
	requireNoLoops(t, img, "wrong region")
	// The superblock claims more data than the partition has.
	big := *d
	vv := *d.Verity
	vv.Superblock.DataBlocks = 1 << 20
	big.Verity = &vv
	if _, err := fakeEnv(newFakeDM()).setup(openImg(t, img), &big, SetupOptions{Name: "ext"}); err == nil {
		t.Error("superblock larger than the data partition accepted")
	}
}

// A signature the kernel cannot check (ENOKEY: certificate not in its
// keyrings) is verified in userspace; if that fails too the image is
// refused and nothing is left; if the kernel accepts it, no userspace
// check is needed.
func TestSetupVeritySignature(t *testing.T) {
	img, d := gptImage(t, true)
	if _, err := fakeEnv(newFakeDM()).setup(openImg(t, img), d, SetupOptions{Name: "ext"}); err == nil {
		t.Error("signed image set up without a verifier")
	}
	bad := errors.New("signature does not verify")
	f := newFakeDM()
	f.sigErr = unix.ENOKEY
	var asked int
	_, err := fakeEnv(f).setup(openImg(t, img), d, SetupOptions{Name: "ext", VerifySignature: func(*Verity) error { asked++; return bad }})
	if !errors.Is(err, bad) || asked != 1 || len(f.devs) != 0 {
		t.Errorf("kernel and userspace reject: err %v, asked %d, devices %v", err, asked, f.devs)
	}
	requireNoLoops(t, img, "rejected signature")

	f = newFakeDM()
	f.sigErr = unix.ENOKEY
	dev, err := fakeEnv(f).setup(openImg(t, img), d, SetupOptions{Name: "ext", VerifySignature: func(*Verity) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Signed != "userspace" || strings.Contains(f.devs[dev.Name].table.Params, "root_hash_sig_key_desc") {
		t.Errorf("userspace-verified: signed=%q table %s", dev.Signed, f.devs[dev.Name].table.Params)
	}
	dev.Close()
	if len(f.devs) != 0 {
		t.Errorf("Close left %v", f.devs)
	}
	requireNoLoops(t, img, "Close")

	f = newFakeDM()
	dev, err = fakeEnv(f).setup(openImg(t, img), d, SetupOptions{Name: "ext", VerifySignature: func(*Verity) error { t.Error("userspace asked although the kernel accepted"); return nil }})
	if err != nil {
		t.Fatalf("kernel-checked signature: %v (add_key needs a keyring)", err)
	}
	if dev.Signed != "kernel" || !strings.Contains(f.devs[dev.Name].table.Params, " 2 root_hash_sig_key_desc ext-setup-root:"+dev.Name) {
		t.Errorf("kernel-verified: signed=%q table %s", dev.Signed, f.devs[dev.Name].table.Params)
	}
	dev.Close()
	requireNoLoops(t, img, "Close")
}

// A live device serving the same root hash is reused without any loop
// device; its deferred removal is cancelled while we mount and armed
// again afterwards (or on failure). A signed image is still verified
// before reuse.
func TestSetupVerityReuse(t *testing.T) {
	img, d := gptImage(t, true)
	f := newFakeDM()
	v := verityTable{HashType: 1, DataDev: uint64(unix.Mkdev(7, 9)), HashDev: uint64(unix.Mkdev(7, 10)), DataBlockSize: 4096, HashBlockSize: 4096,
		DataBlocks: 512, HashStart: 1, Algorithm: "sha256", RootHash: d.Verity.RootHash, Salt: []byte{1, 2}}
	f.devs["loop9p1-4-verity"] = &fakeDev{uuid: "CRYPT-VERITY-x-loop9p1-4-verity", minor: 40, table: &dmTarget{Length: v.Sectors(), Type: "verity", Params: v.Params()}, deferred: true, open: 1, active: true}
	f.devs["unrelated"] = &fakeDev{uuid: "CRYPT-LUKS2-y", minor: 41, table: &dmTarget{Type: "crypt", Params: "x"}, open: 1}

	bad := errors.New("no")
	if _, err := fakeEnv(f).setup(openImg(t, img), d, SetupOptions{Name: "ext", VerifySignature: func(*Verity) error { return bad }}); !errors.Is(err, bad) {
		t.Errorf("reuse with a bad signature: %v", err)
	}
	if !f.devs["loop9p1-4-verity"].deferred {
		t.Error("failed reuse did not re-arm the deferred removal")
	}
	dev, err := fakeEnv(f).setup(openImg(t, img), d, SetupOptions{Name: "ext", VerifySignature: func(*Verity) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if !dev.Reused || dev.Name != "loop9p1-4-verity" || f.devs[dev.Name].deferred {
		t.Errorf("reuse: %+v deferred=%v", dev, f.devs[dev.Name].deferred)
	}
	if l := loopsBacking(img); len(l) != 0 {
		t.Errorf("reuse attached loop devices %v", l)
	}
	if err := dev.Mounted(); err != nil || !f.devs[dev.Name].deferred {
		t.Errorf("Mounted after reuse: %v, deferred=%v", err, f.devs[dev.Name].deferred)
	}
	// A different root hash is not reused.
	other := *d
	ov := *d.Verity
	ov.RootHash = mustHex(t, strings.Repeat("11", 32))
	other.Verity = &ov
	dev, err = fakeEnv(f).setup(openImg(t, img), &other, SetupOptions{Name: "ext", VerifySignature: func(*Verity) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if dev.Reused {
		t.Error("device with another root hash reused")
	}
	dev.Close()
	requireNoLoops(t, img, "Close")
}

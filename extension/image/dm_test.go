package image

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testRootHash = "d0cee9af053587f5622691bf5e0c8961734924d65292f5dd52126a7d5cb80f4d"

func testTable(t *testing.T) verityTable {
	return verityTable{HashType: 1, DataDev: uint64(unix.Mkdev(259, 1)), HashDev: uint64(unix.Mkdev(259, 2)),
		DataBlockSize: 4096, HashBlockSize: 4096, DataBlocks: 300, HashStart: 1, Algorithm: "sha256",
		RootHash: mustHex(t, testRootHash), Salt: mustHex(t, "a1b2")}
}

// The table line is exactly the kernel's verity format.
func TestVerityTableParams(t *testing.T) {
	v := testTable(t)
	want := "1 259:1 259:2 4096 4096 300 1 sha256 " + testRootHash + " a1b2"
	if got := v.Params(); got != want {
		t.Errorf("params\n got %s\nwant %s", got, want)
	}
	if v.Sectors() != 300*8 {
		t.Errorf("sectors %d, want %d", v.Sectors(), 300*8)
	}
	v.SigKeyDesc = "ext-setup-root:x"
	if got := v.Params(); got != want+" 2 root_hash_sig_key_desc ext-setup-root:x" {
		t.Errorf("signed params %s", got)
	}
	v.Salt = nil
	if !strings.Contains(v.Params(), testRootHash+" - 2 ") {
		t.Errorf("empty salt must be '-': %s", v.Params())
	}
	back, err := parseVerityParams(v.Params())
	if err != nil {
		t.Fatal(err)
	}
	if !back.sameData(v) || back.SigKeyDesc != v.SigKeyDesc {
		t.Errorf("round trip: %+v vs %+v", back, v)
	}
	other := v
	other.RootHash = mustHex(t, strings.Repeat("00", 32))
	if back.sameData(other) {
		t.Error("different root hash counted as the same data")
	}
	if _, err := parseVerityParams("1 2 3"); err == nil {
		t.Error("short table accepted")
	}
}

// Names and dm uuids follow systemd 262 / libcryptsetup.
func TestVerityNames(t *testing.T) {
	n := verityDMName("/dev/loop3p1", 17)
	if n != "loop3p1-17-verity" {
		t.Errorf("name %s", n)
	}
	u := verityDMUUID("734924D6-5292-f5dd-5212-6a7d5cb80f4d", n)
	if u != "CRYPT-VERITY-734924d65292f5dd52126a7d5cb80f4d-loop3p1-17-verity" {
		t.Errorf("uuid %s", u)
	}
	if !isVerityUUID(u) || isVerityUUID("CRYPT-LUKS2-x") {
		t.Error("isVerityUUID")
	}
}

// The request encoding round-trips through a fake kernel: create, load a
// read-only table, resume, read table, status and list back, remove.
func TestDMRequests(t *testing.T) {
	f := newFakeDM()
	d := &DM{c: f}
	dev, err := d.Create("loop3p1-17-verity", "CRYPT-VERITY-abc-loop3p1-17-verity")
	if err != nil {
		t.Fatal(err)
	}
	if unix.Major(dev) != 253 || unix.Minor(dev) != 1 {
		t.Errorf("dev %d:%d", unix.Major(dev), unix.Minor(dev))
	}
	if _, err := d.Create("loop3p1-17-verity", ""); !errors.Is(err, unix.EBUSY) {
		t.Errorf("second create: %v", err)
	}
	v := testTable(t)
	tg := dmTarget{Length: v.Sectors(), Type: "verity", Params: v.Params()}
	if err := d.LoadTable("loop3p1-17-verity", tg, true); err != nil {
		t.Fatal(err)
	}
	if err := d.Resume("loop3p1-17-verity"); err != nil {
		t.Fatal(err)
	}
	ts, err := d.Table("loop3p1-17-verity", true)
	if err != nil || len(ts) != 1 || ts[0] != tg {
		t.Fatalf("table %+v, %v", ts, err)
	}
	st, err := d.Table("loop3p1-17-verity", false)
	if err != nil || len(st) != 1 || st[0].Params != "V" {
		t.Fatalf("status %+v, %v", st, err)
	}
	info, err := d.Info("loop3p1-17-verity")
	if err != nil || info.UUID != "CRYPT-VERITY-abc-loop3p1-17-verity" || info.Targets != 1 {
		t.Fatalf("info %+v, %v", info, err)
	}
	if _, err := d.Create("other", ""); err != nil {
		t.Fatal(err)
	}
	names, err := d.List()
	if err != nil || len(names) != 2 {
		t.Fatalf("list %q, %v", names, err)
	}
	if err := d.Remove("other", false); err != nil {
		t.Fatal(err)
	}
	if err := d.CancelDeferredRemove("loop3p1-17-verity"); err != nil {
		t.Fatal(err)
	}
	// Errors name the operation and the device and unwrap to the errno.
	err = d.Remove("nonexistent", true)
	var de *DMError
	if !errors.As(err, &de) || !errors.Is(err, unix.ENXIO) || !strings.Contains(err.Error(), "DM_DEV_REMOVE(deferred) nonexistent") {
		t.Errorf("error %v", err)
	}
	if _, err := encodeDM(strings.Repeat("x", 128), "", 0, 0, nil, 0); err == nil {
		t.Error("128-byte name accepted")
	}
}

// An empty device list and a corrupt answer are handled within bounds.
func TestDecodeBounds(t *testing.T) {
	buf, _ := encodeDM("", "", 0, 0, nil, 1024)
	h, _ := decodeDM(buf)
	names, err := decodeNameList(buf, h)
	if err != nil || names != nil {
		t.Errorf("empty list: %q %v", names, err)
	}
	h.Target_count = 3
	if _, err := decodeTargets(buf[:dmHeaderSize+8], h); err == nil {
		t.Error("targets beyond the buffer accepted")
	}
	h.Data_start = 4
	if _, err := decodeTargets(buf, h); err == nil {
		t.Error("data start inside the header accepted")
	}
}

func TestModuleChain(t *testing.T) {
	dep := "kernel/drivers/md/dm-mod.ko.xz:\n" +
		"kernel/drivers/md/dm-bufio.ko.xz: kernel/drivers/md/dm-mod.ko.xz\n" +
		"kernel/drivers/md/dm-verity.ko.xz: kernel/drivers/md/dm-bufio.ko.xz kernel/lib/reed_solomon/reed_solomon.ko.xz kernel/drivers/md/dm-mod.ko.xz\n"
	got, err := moduleChain(strings.NewReader(dep), "dm_verity")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/drivers/md/dm-mod.ko.xz", "kernel/lib/reed_solomon/reed_solomon.ko.xz", "kernel/drivers/md/dm-bufio.ko.xz", "kernel/drivers/md/dm-verity.ko.xz"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("chain %q", got)
	}
	if _, err := moduleChain(strings.NewReader(dep), "nope"); err == nil {
		t.Error("unknown module found")
	}
}

// Without device-mapper (this host: no /dev/mapper/control, no module
// to load) opening fails with systemd's wording, never silently.
func TestNoDeviceMapper(t *testing.T) {
	dir := t.TempDir()
	saved := []any{dmControlPath, sysModule, modulesDir, modprobeBin}
	dmControlPath, sysModule, modulesDir, modprobeBin = filepath.Join(dir, "control"), dir, dir, []string{filepath.Join(dir, "modprobe")}
	t.Cleanup(func() {
		dmControlPath, sysModule, modulesDir, modprobeBin = saved[0].(string), saved[1].(string), saved[2].(string), saved[3].([]string)
	})
	var logged bytes.Buffer
	_, err := OpenDM(func(f string, a ...any) { logged.WriteString(f) })
	if err == nil || !strings.Contains(err.Error(), "cannot initialize device-mapper") {
		t.Fatalf("OpenDM without device-mapper: %v", err)
	}
	if _, statErr := os.Stat(dmControlPath); statErr == nil {
		t.Fatal("control node appeared")
	}
}

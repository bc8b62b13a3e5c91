package image

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/mount"
	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/paths"
)

// SetupOptions configures SetupVerity.
type SetupOptions struct {
	Log *oplog.Logger
	// Name is the image name, for log lines and errors.
	Name string
	// HashFile is the opened .verity sidecar when Verity.HashPath is set
	// (the caller resolves it inside the root).
	HashFile *os.File
	// VerifySignature checks the PKCS#7 signature of the root hash in
	// userspace against the trusted certificates (verity.d). It is asked
	// only when the kernel could not check the signature itself; it must
	// return an error unless the signature verifies. Required when the
	// image carries a signature.
	VerifySignature func(*Verity) error
	// IgnoreSignature sets the device up as plain verity even though the
	// image carries a signature (a policy that does not ask for
	// "signed"). It never makes a signature that fails to verify count.
	IgnoreSignature bool
}

// Device is a dm-verity device serving an image's data partition.
type Device struct {
	Name string // device-mapper name
	UUID string
	Node string // /dev/dm-N, to mount from
	Dev  uint64
	// Signed says who checked the root hash signature: "kernel",
	// "userspace", or "" when the device is not signature-checked.
	Signed string
	// Reused is true when an existing device with the same root hash
	// (set up earlier by us or by systemd) serves the image.
	Reused bool

	dm    *DM
	loops []*mount.Loop
	log   *oplog.Logger
	done  bool
}

// setupEnv holds what SetupVerity talks to; tests replace parts of it.
type setupEnv struct {
	openDM     func(logf func(string, ...any)) (*DM, error)
	attachLoop func(*os.File, mount.LoopOptions) (*mount.Loop, error)
	node       func(dev uint64) string // the node to mount a dm device from
	nodeWait   time.Duration
	// measure requests the TPM measurement of a new activation (measure.go).
	measure func(dev *Device, v *Verity, signed bool, log *oplog.Logger)
}

var defaultEnv = setupEnv{openDM: OpenDM, attachLoop: mount.AttachLoop, node: dmNode, nodeWait: 2 * time.Second, measure: measureVerity}

// ErrNoVerity is returned by SetupVerity for a dissected image without
// verity data.
var ErrNoVerity = errors.New("image carries no verity data")

// SetupVerity sets up the data partition of img through dm-verity: it
// attaches the image to a read-only loop device (partition scanning for a
// GPT image, like systemd), creates the verity device named and tagged as
// systemd 262 does, hands a root hash signature to the kernel first and
// verifies it in userspace when the kernel cannot, and resumes the
// device. An existing device serving the same root hash is reused
// instead. On every error it removes what it set up. The caller mounts
// Device.Node and then calls Mounted (or Close on failure).
func SetupVerity(img *os.File, d *Dissected, o SetupOptions) (*Device, error) {
	return defaultEnv.setupMeasured(img, d, o)
}

func (env setupEnv) setup(img *os.File, d *Dissected, o SetupOptions) (dev *Device, err error) {
	signed, err := checkSetup(d, o)
	if err != nil {
		return nil, err
	}
	v := d.Verity
	log := o.Log
	if log == nil {
		log = oplog.Discard()
	}

	logf := func(f string, a ...any) { log.Infof(f, a...) }
	// An operation of its own: the first verity image of a boot loads
	// dm_verity (and dm_mod) here, which under TCG costs a noticeable part
	// of the set-up.
	op := log.Op("open device-mapper control %s (loading dm_verity when missing)", dmControlPath)
	dm, err := env.openDM(logf)
	if op.Finish(err) != nil {
		return nil, err
	}
	dev = &Device{dm: dm, log: log}
	held := dev // dev itself is nil once an error is returned
	defer func() {
		if err != nil {
			held.teardown()
		}
	}()

	want := wantedTable(v)
	// An existing device serving the same root hash is reused; a signed
	// image's signature is still checked first (reuse must not bypass it).
	if r, ok := env.findReusable(dm, want, log); ok {
		if err := dev.reuse(r, signed, v, o); err != nil {
			return nil, err
		}
		return dev, nil
	}
	nodes, err := env.attachNodes(dev, img, d, o)
	if err != nil {
		return nil, err
	}
	if err := env.createVerity(dev, want, nodes, signed, v, o); err != nil {
		return nil, err
	}
	return dev, nil
}

// checkSetup refuses, before anything is set up, an image without verity
// data, a signature nobody can verify, a sidecar the caller did not open
// and verity parameters that are incomplete or cover more than the data
// partition. It returns whether the root hash signature is used.
func checkSetup(d *Dissected, o SetupOptions) (signed bool, err error) {
	if d == nil || d.Verity == nil {
		return false, ErrNoVerity
	}
	v := d.Verity
	signed = signatureUsed(v, o)
	if signed && o.VerifySignature == nil {
		return false, errors.New("image carries a root hash signature but no verifier was given")
	}
	if v.HashPath != "" && o.HashFile == nil {
		return false, fmt.Errorf("verity hash sidecar %s not opened", v.HashPath)
	}
	sb := v.Superblock
	if sb.DataBlockSize == 0 || sb.HashBlockSize == 0 || sb.DataBlocks == 0 || sb.Algorithm == "" || len(v.RootHash) == 0 {
		return false, fmt.Errorf("incomplete verity parameters (block sizes %d/%d, %d data blocks, algorithm %q, root hash %d bytes)",
			sb.DataBlockSize, sb.HashBlockSize, sb.DataBlocks, sb.Algorithm, len(v.RootHash))
	}
	if dataBytes := sb.DataBlocks * uint64(sb.DataBlockSize); d.Data.Region.Size != 0 && dataBytes > d.Data.Region.Size {
		return false, fmt.Errorf("verity superblock covers %d bytes but the data partition has %d", dataBytes, d.Data.Region.Size)
	}
	return signed, nil
}

// wantedTable is the verity table v asks for, without the devices (hash
// type 1 when the superblock leaves it 0).
func wantedTable(v *Verity) verityTable {
	sb := v.Superblock
	want := verityTable{HashType: sb.HashType, DataBlockSize: sb.DataBlockSize, HashBlockSize: sb.HashBlockSize,
		DataBlocks: sb.DataBlocks, HashStart: v.HashStartBlock, Algorithm: sb.Algorithm, RootHash: v.RootHash, Salt: sb.Salt}
	if want.HashType == 0 {
		want.HashType = 1
	}
	return want
}

// reuse adopts the existing device r; a signed image's signature is
// verified in userspace first.
func (dev *Device) reuse(r *Device, signed bool, v *Verity, o SetupOptions) error {
	dev.adopt(r)
	if signed {
		op := dev.log.Op("verify root hash signature of %s in userspace before reusing %s", o.Name, r.Name)
		if err := op.Finish(o.VerifySignature(v)); err != nil {
			return fmt.Errorf("root hash signature: %w", err)
		}
		dev.Signed = "userspace"
	}
	return nil
}

// verityNodes are the block devices the verity table is built over: the
// data and hash nodes, and the loop device whose disk sequence number
// names the dm device.
type verityNodes struct {
	data, hash string
	seqOf      *mount.Loop
}

// attachNodes attaches the loop device(s): the whole image with partition
// scanning for a GPT image, so the data partition is loopNpM as systemd
// names it (one loop device per partition when the kernel did not scan
// the table), and the verity sidecar or hash partition. Every loop device
// is kept in dev.loops for the teardown.
func (env setupEnv) attachNodes(dev *Device, img *os.File, d *Dissected, o SetupOptions) (verityNodes, error) {
	log, v := dev.log, d.Verity
	gpt := d.Data.UUID != "" || d.Data.Region.Offset != 0
	op := log.Op("attach loop device for %s (read-only, autoclear, partscan=%v)", img.Name(), gpt)
	lp, err := env.attachLoop(img, mount.LoopOptions{ReadOnly: true, Autoclear: true, PartScan: gpt})
	if op.Finish(err) != nil {
		return verityNodes{}, err
	}
	dev.loops = append(dev.loops, lp)
	n := verityNodes{data: lp.Path, seqOf: lp}
	// window attaches a byte range of img as its own loop device.
	window := func(what string, r Region) (*mount.Loop, error) {
		op := log.Op("attach loop device for the %s of %s (offset %d, size %d)", what, img.Name(), r.Offset, r.Size)
		wl, err := env.attachLoop(img, mount.LoopOptions{ReadOnly: true, Autoclear: true, Offset: r.Offset, SizeLimit: r.Size})
		if op.Finish(err) != nil {
			return nil, err
		}
		dev.loops = append(dev.loops, wl)
		return wl, nil
	}
	partsScanned := gpt
	if gpt {
		n.data, err = env.partitionNode(lp.Path, d.Data.Region)
		if errors.Is(err, errNoPartitions) {
			// The kernel did not scan the table (a kernel without
			// CONFIG_EFI_PARTITION, like this project's build host):
			// one loop device per partition instead.
			log.Infof("%s: the kernel created no partitions for %s, attaching the partitions as separate loop devices", o.Name, lp.Path)
			partsScanned = false
			dl, err := window("data partition", d.Data.Region)
			if err != nil {
				return verityNodes{}, err
			}
			n.data, n.seqOf = dl.Path, dl
			// The whole-image device serves nothing now.
			lp.Close()
			dev.loops = dev.loops[1:]
		} else if err != nil {
			return verityNodes{}, fmt.Errorf("data partition: %w", err)
		}
	}
	switch {
	case v.HashPath != "":
		op := log.Op("attach loop device for verity sidecar %s", o.HashFile.Name())
		hl, err := env.attachLoop(o.HashFile, mount.LoopOptions{ReadOnly: true, Autoclear: true})
		if op.Finish(err) != nil {
			return verityNodes{}, err
		}
		dev.loops = append(dev.loops, hl)
		n.hash = hl.Path
	case partsScanned:
		if n.hash, err = env.partitionNode(lp.Path, v.Hash); err != nil {
			return verityNodes{}, fmt.Errorf("verity hash partition: %w", err)
		}
	default:
		hl, err := window("verity hash partition", v.Hash)
		if err != nil {
			return verityNodes{}, err
		}
		n.hash = hl.Path
	}
	return n, nil
}

// createVerity creates the dm-verity device over nodes, named and tagged
// as systemd 262 does, loads its table (with the signature when signed),
// resumes it and waits for its node.
func (env setupEnv) createVerity(dev *Device, want verityTable, nodes verityNodes, signed bool, v *Verity, o SetupOptions) error {
	var err error
	log, dm := dev.log, dev.dm
	if want.DataDev, err = rdevOf(nodes.data); err != nil {
		return err
	}
	if want.HashDev, err = rdevOf(nodes.hash); err != nil {
		return err
	}
	seq, err := blkGetDiskSeq(nodes.seqOf.File)
	if err != nil {
		return err
	}

	dev.Name = verityDMName(nodes.data, seq)
	dev.UUID = verityDMUUID(v.Superblock.UUID, dev.Name)
	op := log.Op("create dm-verity device %s (uuid %s) over %s, hash %s", dev.Name, dev.UUID, nodes.data, nodes.hash)
	dev.Dev, err = dm.Create(dev.Name, dev.UUID)
	if op.Finish(err) != nil {
		dev.Name = "" // nothing to remove
		return err
	}

	if signed {
		if err := dev.loadSigned(want, v, o); err != nil {
			return err
		}
	} else {
		op := log.Op("load verity table into %s (root hash %s, unsigned)", dev.Name, hex.EncodeToString(v.RootHash))
		if err := op.Finish(dm.LoadTable(dev.Name, dmTarget{Length: want.Sectors(), Type: "verity", Params: want.Params()}, true)); err != nil {
			return err
		}
	}
	op = log.Op("resume %s", dev.Name)
	if err := op.Finish(dm.Resume(dev.Name)); err != nil {
		return err
	}
	dev.Node = env.node(dev.Dev)
	return waitNode(dev.Node, env.nodeWait)
}

// loadSigned loads the table with the signature handed to the kernel; if
// the kernel cannot check it (certificate not in its trusted keyrings:
// ENOKEY, or no signature support: EINVAL), the signature is verified in
// userspace and the table loaded without it, as systemd 262 does. A
// signature the userspace check rejects refuses the image.
func (dev *Device) loadSigned(want verityTable, v *Verity, o SetupOptions) error {
	log := dev.log
	desc := "ext-setup-root:" + dev.Name
	kid, kerr := addUserKey(desc, v.Signature.PKCS7)
	if kerr == nil {
		signedT := want
		signedT.SigKeyDesc = desc
		op := log.Op("load verity table into %s with root hash signature for the kernel to check", dev.Name)
		kerr = op.Finish(dev.dm.LoadTable(dev.Name, dmTarget{Length: want.Sectors(), Type: "verity", Params: signedT.Params()}, true))
		if err := dropKey(kid); err != nil {
			log.Warnf("%v", err)
		}
		if kerr == nil {
			dev.Signed = "kernel"
			return nil
		}
	}
	log.Infof("kernel check of the root hash signature of %s failed (%v), verifying in userspace", o.Name, kerr)
	op := log.Op("verify root hash signature of %s in userspace", o.Name)
	if err := op.Finish(o.VerifySignature(v)); err != nil {
		return fmt.Errorf("root hash signature: %w", err)
	}
	dev.Signed = "userspace"
	op = log.Op("load verity table into %s (root hash %s, signature verified in userspace)", dev.Name, hex.EncodeToString(v.RootHash))
	return op.Finish(dev.dm.LoadTable(dev.Name, dmTarget{Length: want.Sectors(), Type: "verity", Params: want.Params()}, true))
}

// findReusable looks for a live verity device (dm uuid CRYPT-VERITY-...)
// whose table serves the same data, and takes back its pending deferred
// removal so it cannot vanish while we mount it. A device already being
// removed (EBUSY/ENXIO on the cancel) is not reused.
func (env setupEnv) findReusable(dm *DM, want verityTable, log *oplog.Logger) (*Device, bool) {
	names, err := dm.List()
	if err != nil {
		log.Debugf("listing device-mapper devices: %v", err)
		return nil, false
	}
	for _, n := range names {
		info, err := dm.Info(n)
		if err != nil || !isVerityUUID(info.UUID) || info.Targets != 1 {
			continue
		}
		ts, err := dm.Table(n, true)
		if err != nil || len(ts) != 1 || ts[0].Type != "verity" {
			continue
		}
		have, err := parseVerityParams(ts[0].Params)
		if err != nil || !have.sameData(want) {
			continue
		}
		op := log.Op("reuse dm-verity device %s (same root hash %s): cancel its deferred removal", n, hex.EncodeToString(want.RootHash))
		if err := op.Finish(dm.CancelDeferredRemove(n)); err != nil {
			continue // EBUSY: already being removed; ENXIO: gone
		}
		d := &Device{Name: n, UUID: info.UUID, Dev: info.Dev, Node: env.node(info.Dev), Reused: true}
		if err := waitNode(d.Node, env.nodeWait); err != nil {
			_ = dm.Remove(n, true)
			continue
		}
		return d, true
	}
	return nil, false
}

func (dev *Device) adopt(r *Device) {
	dev.Name, dev.UUID, dev.Dev, dev.Node, dev.Reused, dev.Signed = r.Name, r.UUID, r.Dev, r.Node, true, r.Signed
}

// Mounted is called once a file system is mounted from Node: it arms the
// device's deferred removal, so the kernel removes it when the last mount
// (the overlay's layer) goes away, and releases the loop fds (autoclear
// then detaches the loop devices after the device-mapper device).
func (dev *Device) Mounted() error {
	if dev.done {
		return nil
	}
	dev.done = true
	op := dev.log.Op("arm deferred removal of %s", dev.Name)
	err := op.Finish(dev.dm.Remove(dev.Name, true))
	dev.closeLoops()
	dev.dm.Close()
	return err
}

// Close undoes the set-up when the mount failed: a device we created is
// removed now (deferred if something still holds it open), a reused one
// gets its deferred removal back, the loop devices are released.
func (dev *Device) Close() error {
	if dev.done {
		return nil
	}
	dev.done = true
	err := dev.teardownErr()
	dev.dm.Close()
	return err
}

func (dev *Device) teardown() {
	if err := dev.teardownErr(); err != nil {
		dev.log.Warnf("tearing down %s: %v", dev.Name, err)
	}
	dev.done = true
	dev.dm.Close()
}

func (dev *Device) teardownErr() error {
	var err error
	if dev.Name != "" {
		if dev.Reused {
			err = dev.dm.Remove(dev.Name, true)
		} else {
			op := dev.log.Op("remove dm-verity device %s", dev.Name)
			err = dev.dm.Remove(dev.Name, false)
			for i := 0; i < 10 && errors.Is(err, unix.EBUSY); i++ {
				// udev's probe of the new device may hold it briefly.
				time.Sleep(20 * time.Millisecond)
				err = dev.dm.Remove(dev.Name, false)
			}
			if errors.Is(err, unix.EBUSY) {
				err = dev.dm.Remove(dev.Name, true)
			}
			op.Finish(err)
		}
	}
	dev.closeLoops()
	return err
}

func (dev *Device) closeLoops() {
	for i := len(dev.loops) - 1; i >= 0; i-- {
		dev.loops[i].Close()
	}
	dev.loops = nil
}

// partitionNode finds the partition of loop device lp whose byte range is
// r (from /sys/class/block/loopN/loopNpM/{start,size}, in 512-byte
// sectors) and waits for its device node.
func (env setupEnv) partitionNode(lp string, r Region) (string, error) {
	if r.Size == 0 {
		return "", fmt.Errorf("empty partition region at offset %d", r.Offset)
	}
	base := filepath.Base(lp)
	rdev, err := rdevOf(lp)
	if err != nil {
		return "", err
	}
	sys := filepath.Join(paths.SysDevBlock, devString(rdev))
	ents, err := os.ReadDir(sys)
	if err != nil {
		return "", err
	}
	parts := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), base+"p") {
			continue
		}
		parts++
		start, err1 := readSysUint(filepath.Join(sys, e.Name(), "start"))
		size, err2 := readSysUint(filepath.Join(sys, e.Name(), "size"))
		if err1 != nil || err2 != nil {
			continue
		}
		if start*512 == r.Offset && size*512 == r.Size {
			node := filepath.Join(paths.DevDir, e.Name())
			return node, waitNode(node, env.nodeWait)
		}
	}
	if parts == 0 {
		return "", errNoPartitions
	}
	return "", fmt.Errorf("no partition of %s at offset %d, size %d", lp, r.Offset, r.Size)
}

// errNoPartitions: the kernel created no partition devices for a loop
// device attached with partition scanning.
var errNoPartitions = errors.New("kernel created no partition devices")

func readSysUint(p string) (uint64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// rdevOf returns the dev_t of a block device node.
func rdevOf(node string) (uint64, error) {
	var st unix.Stat_t
	if err := retry(func() error { return unix.Stat(node, &st) }); err != nil {
		return 0, &os.PathError{Op: "stat", Path: node, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, fmt.Errorf("%s is not a block device", node)
	}
	return st.Rdev, nil
}

// waitNode waits up to d for a device node devtmpfs creates
// asynchronously to the ioctl that added the device.
func waitNode(node string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		_, err := os.Stat(node)
		if err == nil || !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package image

import (
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/vpick"

	"bytes"
	"errors"
	"fmt"
	"io"
)

// DissectOptions says how to dissect one image. The caller resolves
// sidecar files and the xattr inside the root by fd and hands over their
// content; Dissect never opens a path.
type DissectOptions struct {
	// Architecture is systemd's name of the architecture whose root/usr
	// partitions count; "" is NativeArchitecture(). Its secondary
	// architecture (x86 for x86-64, arm for arm64) is tried next.
	Architecture string
	// AllowUsr lets a usr partition serve when there is no root partition
	// (systemd's DISSECT_IMAGE_USR_NO_ROOT: sysext, not confext).
	AllowUsr bool

	// RootHashXattr is the value of the image file's user.verity.roothash
	// xattr ("" when it has none).
	RootHashXattr string
	// RootHashFile is the .roothash sidecar (nil when absent).
	RootHashFile io.Reader
	// RootHashSigFile is the .roothash.p7s sidecar (nil when absent).
	RootHashSigFile io.Reader
	// VerityFile is the .verity sidecar (nil when absent), VerityFileSize
	// its size and VerityPath its path inside the root (recorded in
	// Verity.HashPath for the set-up).
	VerityFile     io.ReaderAt
	VerityFileSize int64
	VerityPath     string
}

// DissectError is an image that cannot be used; Rule names what failed.
type DissectError struct {
	Rule string
	Err  error
}

func (e *DissectError) Error() string {
	if e.Err != nil {
		return e.Rule + ": " + e.Err.Error()
	}
	return e.Rule
}
func (e *DissectError) Unwrap() error { return e.Err }

// ErrNoFilesystem is returned when an image holds neither a known file
// system (squashfs, erofs, ext4) nor a GPT.
var ErrNoFilesystem = errors.New("no squashfs/erofs/ext4 file system and no GPT")

// Dissect examines the image in r (size bytes) the way systemd 262's
// dissect-image does for sysext/confext: a bare file system image (with
// optional .verity/.roothash/.roothash.p7s sidecars or the
// user.verity.roothash xattr), or a GPT disk image whose root (or, with
// AllowUsr, usr) partition of the architecture is the data, with its
// -verity and -verity-sig partitions.
//
// The root hash comes from, in systemd's order: the xattr, then the
// .roothash sidecar (both loaded before dissection, as systemd's
// verity_settings_load does); then the signature partition's "rootHash"
// (which must agree with an earlier one); then the data and verity
// partition UUIDs (the first and last 128 bits of a 256-bit root hash,
// as systemd-repart derives them).
func Dissect(r io.ReaderAt, size int64, o DissectOptions) (*Dissected, error) {
	if o.Architecture == "" {
		o.Architecture = NativeArchitecture()
	}
	var ext []byte
	var extSource string
	if o.RootHashXattr != "" {
		h, err := ParseRootHash(o.RootHashXattr)
		if err != nil {
			return nil, &DissectError{Rule: "user.verity.roothash xattr", Err: err}
		}
		ext, extSource = h, "user.verity.roothash xattr"
	} else if o.RootHashFile != nil {
		h, err := ReadRootHash(o.RootHashFile)
		if err != nil {
			return nil, &DissectError{Rule: ".roothash sidecar", Err: err}
		}
		ext, extSource = h, ".roothash sidecar"
	}
	var extSig *Signature
	if o.RootHashSigFile != nil {
		s, err := ReadSignatureFile(o.RootHashSigFile)
		if err != nil {
			return nil, &DissectError{Rule: ".roothash.p7s sidecar", Err: err}
		}
		extSig = s
	}

	fstype, err := DetectFS(r, 0)
	if err != nil {
		return nil, &DissectError{Rule: "cannot read the image header", Err: err}
	}
	if o.VerityFile != nil || fstype != "" {
		// A .verity sidecar means there is no partition table.
		if fstype == "" {
			return nil, &DissectError{Rule: "image has a .verity sidecar but holds no squashfs/erofs/ext4 file system"}
		}
		return dissectBare(r, size, fstype, o, ext, extSource, extSig)
	}
	g, err := ReadGPT(r, size)
	if errors.Is(err, ErrNoGPT) {
		return nil, &DissectError{Rule: "unrecognized image", Err: ErrNoFilesystem}
	}
	if err != nil {
		return nil, &DissectError{Rule: "invalid partition table", Err: err}
	}
	return dissectGPT(r, g, o, ext, extSource, extSig)
}

func dissectBare(r io.ReaderAt, size int64, fstype string, o DissectOptions, ext []byte, extSource string, extSig *Signature) (*Dissected, error) {
	d := &Dissected{Data: Partition{Designator: "root", Region: Region{Offset: 0, Size: uint64(max(size, 0))}, FSType: fstype, ReadOnly: true}}
	d.Partitions = []Partition{d.Data}
	if o.VerityFile == nil {
		if ext != nil {
			return nil, &DissectError{Rule: fmt.Sprintf("root hash from %s but no .verity sidecar with the hash tree", extSource)}
		}
		if extSig != nil {
			return nil, &DissectError{Rule: ".roothash.p7s sidecar but no .verity sidecar and no root hash"}
		}
		return d, nil
	}
	if ext == nil {
		return nil, &DissectError{Rule: ".verity sidecar but no root hash (.roothash sidecar or user.verity.roothash xattr)"}
	}
	sb, err := ParseVeritySuperblock(io.NewSectionReader(o.VerityFile, 0, veritySBSize))
	if err != nil {
		return nil, &DissectError{Rule: ".verity sidecar", Err: err}
	}
	if err := checkVerityGeometry(sb, uint64(max(size, 0)), uint64(max(o.VerityFileSize, 0))); err != nil {
		return nil, &DissectError{Rule: ".verity sidecar", Err: err}
	}
	path := o.VerityPath
	if path == "" {
		path = ".verity"
	}
	d.Verity = &Verity{
		Hash: Region{Offset: 0, Size: uint64(max(o.VerityFileSize, 0))}, HashPath: path, Superblock: sb,
		HashStartBlock: 1, RootHash: ext, RootHashSource: extSource, Signature: extSig,
	}
	return d, nil
}

// gptCandidates collects the partitions of g by designator for arch,
// leaving out those flagged no-auto, as systemd's dissection does.
func gptCandidates(g *GPT, arch string) map[string][]GPTPartition {
	m := map[string][]GPTPartition{}
	for _, p := range g.Partitions {
		if d := Designator(arch, p.Type); d != "" && p.Attrs&gptFlagNoAuto == 0 {
			m[d] = append(m[d], p)
		}
	}
	return m
}

// dissectGPT picks the data partition of a GPT image (root, else usr where
// allowed, of the native or else the secondary architecture) and its
// -verity and -verity-sig partitions, and works out the root hash.
func dissectGPT(r io.ReaderAt, g *GPT, o DissectOptions, ext []byte, extSource string, extSig *Signature) (*Dissected, error) {
	arch, cand, err := gptArchitecture(g, o)
	if err != nil {
		return nil, err
	}
	d := &Dissected{}
	for _, p := range g.Partitions {
		d.Partitions = append(d.Partitions, Partition{
			Designator: Designator(arch, p.Type), Region: p.Region, UUID: p.UUID, Label: p.Name,
			ReadOnly: p.Attrs&(1<<60) != 0, GrowFS: p.Attrs&(1<<59) != 0,
		})
	}
	base := "root"
	if len(cand["root"]) == 0 {
		if !o.AllowUsr || len(cand["usr"]) == 0 {
			what := "root"
			if o.AllowUsr {
				what = "root or usr"
			}
			return nil, &DissectError{Rule: fmt.Sprintf("GPT has no %s partition for architecture %s", what, o.Architecture)}
		}
		base = "usr"
		d.UsrOnly = true
	}
	data := pickPartition(cand[base], uuidHalf(ext, false))
	if data == nil {
		return nil, &DissectError{Rule: fmt.Sprintf("GPT has no %s partition with the UUID %s that the root hash from %s selects", base, uuidHalf(ext, false), extSource)}
	}
	d.Data = Partition{Designator: base, Region: data.Region, UUID: data.UUID, Label: data.Name, ReadOnly: data.Attrs&(1<<60) != 0, GrowFS: data.Attrs&(1<<59) != 0}
	if d.Data.FSType, err = DetectFS(r, int64(data.Region.Offset)); err != nil {
		return nil, &DissectError{Rule: fmt.Sprintf("cannot read %s partition %d", base, data.Number), Err: err}
	}
	if d.Data.FSType == "" {
		return nil, &DissectError{Rule: fmt.Sprintf("%s partition %d holds no squashfs/erofs/ext4 file system", base, data.Number)}
	}

	vp := pickPartition(cand[base+"-verity"], uuidHalf(ext, true))
	sp := pickPartition(cand[base+"-verity-sig"], "")
	if vp == nil {
		if sp != nil {
			return nil, &DissectError{Rule: fmt.Sprintf("GPT has a %s-verity-sig partition but no %s-verity partition", base, base)}
		}
		if ext != nil || extSig != nil {
			return nil, &DissectError{Rule: fmt.Sprintf("root hash or signature given (%s) but the GPT has no %s-verity partition", extSource, base)}
		}
		return d, nil
	}
	if d.Verity, err = gptVerity(r, base, data, vp, sp, ext, extSource, extSig); err != nil {
		return nil, err
	}
	return d, nil
}

// gptArchitecture returns the architecture whose partitions count (the
// requested one, else its secondary one when only that has a root, or a
// usr where allowed) and the candidates of each designator.
func gptArchitecture(g *GPT, o DissectOptions) (string, map[string][]GPTPartition, error) {
	arch := o.Architecture
	if _, ok := archTypes[arch]; !ok {
		return "", nil, &DissectError{Rule: fmt.Sprintf("no partition types known for architecture %q", arch)}
	}
	cand := gptCandidates(g, arch)
	if len(cand["root"]) == 0 && (!o.AllowUsr || len(cand["usr"]) == 0) {
		if sec := release.SecondaryArchitecture(arch); sec != "" {
			c2 := gptCandidates(g, sec)
			if len(c2["root"]) > 0 || (o.AllowUsr && len(c2["usr"]) > 0) {
				return sec, c2, nil
			}
		}
	}
	return arch, cand, nil
}

// uuidHalf is the partition UUID a root hash known before dissection
// selects: its first 128 bits for the data partition, its last for the
// verity partition; "" when there is no such hash.
func uuidHalf(h []byte, last bool) string {
	if len(h) < 32 {
		return ""
	}
	b := h[:16]
	if last {
		b = h[len(h)-16:]
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// pickPartition chooses one of the candidates of a designator the way
// systemd 262's dissect_image does (no-auto partitions are not
// candidates): with a root hash known before dissection (xattr or
// sidecar) only the partition whose UUID is the matching half of it
// (want) counts; of several left, the one whose label is the newest
// version (strverscmp_improved, an empty label the oldest) wins, and of
// equal labels the first in the table. That lets one DDI carry A/B
// versions of its root (and -verity, -verity-sig) partitions. The count is
// bounded by the GPT reader's entry limit.
func pickPartition(cand []GPTPartition, want string) *GPTPartition {
	var best *GPTPartition
	for i := range cand {
		p := &cand[i]
		if want != "" && p.UUID != want {
			continue
		}
		if best == nil || labelNewer(p.Name, best.Name) {
			best = p
		}
	}
	return best
}

// gptVerity reads the verity set-up of the data partition: the root hash
// (known before dissection, else the signature partition's, else the
// partition UUIDs'), the signature and the hash partition's superblock,
// checked against the data partition.
func gptVerity(r io.ReaderAt, base string, data, vp, sp *GPTPartition, ext []byte, extSource string, extSig *Signature) (*Verity, error) {
	rootHash, source := ext, extSource
	sig := extSig
	if sp != nil {
		s, err := ParseSignatureJSON(io.NewSectionReader(r, int64(sp.Region.Offset), int64(sp.Region.Size)), int64(sp.Region.Size))
		if err != nil {
			return nil, &DissectError{Rule: fmt.Sprintf("%s-verity-sig partition %d", base, sp.Number), Err: err}
		}
		if rootHash != nil && !bytes.Equal(rootHash, s.RootHash) {
			return nil, &DissectError{Rule: fmt.Sprintf("root hash from %s (%x) differs from the %s-verity-sig partition's (%x)", source, rootHash, base, s.RootHash)}
		}
		if rootHash == nil {
			rootHash, source = s.RootHash, base+"-verity-sig partition"
		}
		sig = s
	}
	if rootHash == nil {
		// systemd's dissected_image_guess_verity_roothash: the data and
		// verity partition UUIDs are the halves of a 256-bit root hash.
		h, err := hashFromUUIDs(data.UUID, vp.UUID)
		if err != nil {
			return nil, &DissectError{Rule: fmt.Sprintf("%s-verity partition %d but no root hash (no signature, sidecar or xattr)", base, vp.Number), Err: err}
		}
		rootHash, source = h, "partition UUIDs"
	}
	sb, err := ParseVeritySuperblock(io.NewSectionReader(r, int64(vp.Region.Offset), veritySBSize))
	if err != nil {
		return nil, &DissectError{Rule: fmt.Sprintf("%s-verity partition %d", base, vp.Number), Err: err}
	}
	if err := checkVerityGeometry(sb, data.Region.Size, vp.Region.Size); err != nil {
		return nil, &DissectError{Rule: fmt.Sprintf("%s-verity partition %d", base, vp.Number), Err: err}
	}
	if ds := verityDigestSizes[sb.Algorithm]; ds != len(rootHash) {
		return nil, &DissectError{Rule: fmt.Sprintf("root hash from %s has %d bytes, %s digests have %d", source, len(rootHash), sb.Algorithm, ds)}
	}
	return &Verity{Hash: vp.Region, Superblock: sb, HashStartBlock: 1, RootHash: rootHash, RootHashSource: source, Signature: sig}, nil
}

// gptFlagNoAuto is the GPT attribute bit (63) that tells automatic
// discovery to leave a partition alone; systemd honours it for root, usr
// and their -verity and -verity-sig partitions.
const gptFlagNoAuto = 1 << 63

// labelNewer reports whether partition label a is a newer version than b,
// as systemd's strverscmp_improved orders them; an empty label (systemd's
// NULL) is older than any other.
func labelNewer(a, b string) bool {
	if a == "" || b == "" {
		return a != "" && b == ""
	}
	return vpick.StrverscmpImproved(a, b) > 0
}

// hashFromUUIDs joins two partition UUIDs (text form) into 32 bytes.
func hashFromUUIDs(a, b string) ([]byte, error) {
	var out []byte
	for _, u := range []string{a, b} {
		h, err := ParseRootHash(stripDashes(u))
		if err != nil || len(h) != 16 {
			return nil, fmt.Errorf("partition UUID %q is not 128 bits of hex", u)
		}
		out = append(out, h...)
	}
	if bytes.Equal(out[:16], make([]byte, 16)) || bytes.Equal(out[16:], make([]byte, 16)) {
		return nil, errors.New("null partition UUID")
	}
	return out, nil
}

func stripDashes(s string) string {
	return string(bytes.ReplaceAll([]byte(s), []byte("-"), nil))
}

// DetectFS reads the superblock magic at off: squashfs ("hsqs" at 0),
// erofs (0xE0F5E1E2 at 1024), ext4 (0xEF53 at 1080). "" means none.
func DetectFS(r io.ReaderAt, off int64) (string, error) {
	buf := make([]byte, 1088)
	n, err := r.ReadAt(buf, off)
	if n < 4 {
		if err == nil || err == io.EOF {
			return "", nil
		}
		return "", err
	}
	if string(buf[0:4]) == "hsqs" {
		return "squashfs", nil
	}
	if n >= 1028 && buf[1024] == 0xe2 && buf[1025] == 0xe1 && buf[1026] == 0xf5 && buf[1027] == 0xe0 {
		return "erofs", nil
	}
	if n >= 1082 && buf[1080] == 0x53 && buf[1081] == 0xef {
		return "ext4", nil
	}
	return "", nil
}

// Package image handles extension images below the file-tree level: it
// dissects raw images (bare file systems and GPT disk images, DDIs) the way
// systemd 262's dissect-image does, finds their dm-verity data and root hash
// signatures, checks them against an image policy, and sets them up through
// loop and device-mapper devices. The extension engine (package extension)
// only asks it for a mounted tree; keeping this apart mirrors systemd, where
// dissect-image is separate from sysext.
//
// Everything read from an image is hostile input: every count, size and
// offset is bounded against the image size before it is used.
package image

// Region is a byte range inside the image file.
type Region struct {
	Offset uint64
	Size   uint64
}

// Partition is one dissected partition (or the whole file for a bare
// file system image).
type Partition struct {
	// Designator is the Discoverable Partitions designator: "root", "usr",
	// "root-verity", "usr-verity", "root-verity-sig", "usr-verity-sig".
	Designator string
	Region     Region
	UUID       string // partition UUID, lowercase; "" for a bare image
	Label      string
	ReadOnly   bool   // GPT attribute bit 60
	GrowFS     bool   // GPT attribute bit 59
	FSType     string // "squashfs", "erofs", "ext4" for data partitions; "" otherwise
}

// VeritySuperblock is the veritysetup (format 1) superblock that starts a
// hash partition or .verity sidecar.
type VeritySuperblock struct {
	Version       uint32
	HashType      uint32
	Algorithm     string // e.g. "sha256"
	DataBlockSize uint32
	HashBlockSize uint32
	DataBlocks    uint64
	Salt          []byte
	UUID          string
}

// Signature is the content of a *-verity-sig partition or a .roothash.p7s
// sidecar: the PKCS#7 (DER) signature of the hex root hash.
type Signature struct {
	RootHash        []byte // from the JSON "rootHash" (nil for a bare .p7s)
	CertFingerprint []byte // sha256 of the signing certificate's DER, if given
	PKCS7           []byte // DER
}

// Verity is everything needed to set up a dm-verity target for the data.
type Verity struct {
	// Hash is where the hash device is: a region of the image file (GPT
	// *-verity partition) when HashPath is "", else the whole file at
	// HashPath (a .verity sidecar, resolved by the caller inside the root).
	Hash       Region
	HashPath   string
	Superblock VeritySuperblock
	// HashStartBlock is the first hash block after the superblock, in
	// hash-block units, as dm-verity's table wants it (1 when a 512-byte
	// superblock is padded to one hash block).
	HashStartBlock uint64
	RootHash       []byte
	// RootHashSource names where the root hash came from ("signature JSON",
	// "partition UUIDs", ".roothash sidecar", "user.verity.roothash xattr").
	RootHashSource string
	Signature      *Signature // nil when unsigned
}

// Dissected is the result of dissecting one image.
type Dissected struct {
	// Data is the partition whose file system becomes the extension tree.
	Data Partition
	// UsrOnly is true when Data is a usr partition (the tree is the
	// image's /usr), as systemd's DISSECT_IMAGE_USR_NO_ROOT.
	UsrOnly bool
	// Verity is nil when the image carries no verity data.
	Verity *Verity
	// Partitions lists every partition of a GPT image (for plan/status).
	Partitions []Partition
}

// Protection is how an image's data partition is protected, in image
// policy terms (systemd's PartitionPolicyFlags: verity, signed,
// encrypted, unprotected, unused, absent).
type Protection string

const (
	ProtectionSigned      Protection = "signed"
	ProtectionVerity      Protection = "verity"
	ProtectionUnprotected Protection = "unprotected"
	ProtectionAbsent      Protection = "absent"
)

package payload

// Limits bound what a payload may declare. Every size read from a payload
// is checked against them before anything is allocated, read or written.
type Limits struct {
	// MaxImage is the largest image (new_partition_info.size) accepted.
	MaxImage uint64
	// MaxManifest bounds the manifest size from the header.
	MaxManifest uint64
	// MaxSignatures bounds the signature blob (signatures_size).
	MaxSignatures uint64
	// MaxOps bounds partition_operations plus noop_operations.
	MaxOps int
}

// Defaults for Limits fields left zero.
const (
	// DefaultMaxImage is 2 GiB: Flatcar's largest extension images are a
	// few hundred MiB.
	DefaultMaxImage = 2 << 30
	// DefaultMaxManifest: a full payload has one operation (about 60
	// bytes) per MiB of image, so 1 MiB of manifest is far more than
	// any image within MaxImage needs.
	DefaultMaxManifest = 1 << 20
	// DefaultMaxSignatures: one RSA-2048 signature serializes to 264
	// bytes; 4 KiB leaves room for a few larger keys.
	DefaultMaxSignatures = 4 << 10
	// maxSignatureCount bounds the entries of the Signatures message.
	maxSignatureCount = 8
	// ChunkSize is delta_generator's chunk (one operation per MiB).
	ChunkSize = 1 << 20
)

// withDefaults returns l with zero fields set to the defaults and MaxOps
// derived from MaxImage (one operation per 4 KiB block at most, which no
// generator comes near, plus the signature noop).
func (l Limits) withDefaults() Limits {
	if l.MaxImage == 0 {
		l.MaxImage = DefaultMaxImage
	}
	if l.MaxManifest == 0 {
		l.MaxManifest = DefaultMaxManifest
	}
	if l.MaxSignatures == 0 {
		l.MaxSignatures = DefaultMaxSignatures
	}
	if l.MaxOps == 0 {
		l.MaxOps = int(min(l.MaxImage/ChunkSize+16, 1<<16))
	}
	return l
}

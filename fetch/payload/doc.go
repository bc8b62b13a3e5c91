// Package payload reads Flatcar's update payload format ("CrAU", version
// 1), in which Flatcar ships extension images, and turns one into the
// image it carries, checking everything before using anything.
//
// The layout (from update_engine's update_metadata.proto and
// delta_generator, see docs/fetch.md): the magic "CrAU", a big-endian u64
// version (1), a big-endian u64 manifest size, the DeltaArchiveManifest
// protobuf (not compressed), the operation data blobs, and last the
// Signatures protobuf. Offsets in the manifest count from the end of the
// manifest. The signed range is everything before the signature blob.
//
// The order of work is the point of the package, because a payload comes
// from the network and is hostile until its signature checks out:
//
//  1. Receive reads the 20-byte header and bounds the manifest size, reads
//     and parses the manifest and bounds every size in it (operation
//     count, data ranges, signature blob, declared image size against
//     Limits) before reading further;
//  2. it streams the rest to a caller's writer (a temporary file on the
//     partition where the image will live, never memory), hashing the
//     signed range and each operation's blob on the way, requires the
//     file to end exactly after the signature blob, and verifies the
//     signatures (RSASSA-PKCS1-v1_5 with SHA-256; one or two, any one
//     valid with a trusted key suffices) before anything is decompressed;
//  3. only then Extract decompresses the REPLACE and REPLACE_BZ operations
//     (other types are refused in step 1) into the image writer, bounding
//     each operation's output by its extent, and checks the image's size
//     and SHA-256 against the signed manifest.
//
// Stricter than Flatcar's download_sysext (ue-rs), which decompresses in
// memory without a bound and checks the signature last: per-operation
// hashes are checked, bytes after the signature blob are refused, and the
// operations must fill the image in order without gaps or overlap (what
// delta_generator writes for a full payload), so that the image is written
// and hashed in one sequential pass.
package payload

// Package fetch downloads an extension image that the A/B selection
// (package abslots) wants and no store holds, the way Flatcar's initrd
// does, and places it only once it is proven good:
//
//   - the URL comes from the [fetch] table of boot.toml (a template with
//     {BOARD}, {VERSION}, {ARCH} and {NAME}; Flatcar's release server and
//     its developer-key switch are the defaults) or from the kernel command
//     line (flatcar.release_file_server_url=, replacing the base URL);
//   - the download streams into a temporary file in the directory where the
//     image will live, never into memory, with a per-request stall timeout,
//     a total deadline and retries for transient failures;
//   - the CrAU payload is checked by package payload (sizes bounded,
//     signature verified before anything is decompressed, operation and
//     image hashes), then the image is extracted into a second temporary
//     file;
//   - the image is opened exactly as a merge would open it (dissection,
//     dm-verity, signature, image policy, extension-release against the
//     target's os-release), and its extension-release must name what was
//     asked for: ID, VERSION_ID (or SYSEXT_LEVEL) of the target version
//     and the architecture, so that a validly signed old image served
//     under a new version's URL is refused;
//   - only then the temporary file is fsynced and renamed to its name and
//     the directory fsynced: a crash leaves either no image or the complete
//     verified one (plus temporary names that the next run removes).
//
// Linking is abslots' job: after the fetch it plans again and finds the
// image present.
package fetch

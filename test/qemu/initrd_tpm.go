package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

// What the initramfs of a measured boot carries beyond the base set
// (InitrdSpec.TPM), for systemd 262 to initialise the verity NvPCR in the
// initrd and to serve io.systemd.PCRExtend there:
//   - tpm2-tss: the TPM drivers, libtss2, systemd-tpm2-setup-early.service
//     (defines the NvPCRs and makes their first extend under the signed
//     initrd policy) and the tpm2 generator;
//   - systemd-pcrextend: systemd-pcrextend, the pcrphase and pcrnvdone
//     units and /usr/lib/nvpcr/*.nvpcr (verity.nvpcr among them);
//   - tpm_crb (QEMU's tpm-crb device) and tpm_tis built in or as modules.
const (
	tpmModules = " tpm2-tss systemd-pcrextend"
	tpmDrivers = " tpm_crb tpm_tis"
)

// tpmUnits are the units dracut 112's systemd-pcrextend module leaves out
// but the measurement of a verity activation needs: the Varlink socket
// (systemd's dissect code and ext-setup-root talk only to it) and the
// service it starts per connection; the socket is wanted by
// sockets.target as in the booted system.
var tpmUnits = []string{"systemd-pcrextend.socket", "systemd-pcrextend@.service"}

// includeTPM copies tpmUnits from the root at merged into the dracut
// --include tree inc and enables the socket there.
func includeTPM(t testing.TB, merged, inc string) {
	t.Helper()
	for _, u := range tpmUnits {
		rel := filepath.Join("usr/lib/systemd/system", u)
		b, err := os.ReadFile(filepath.Join(merged, rel))
		if err != nil {
			t.Fatalf("measured-boot initrd: %v (is the root rootfs-uefi? run make qemu-prepare-uefi)", err)
		}
		writeFile(t, inc, rel, string(b), 0o644)
	}
	symlink(t, inc, "usr/lib/systemd/system/sockets.target.wants/systemd-pcrextend.socket", "../systemd-pcrextend.socket")
}

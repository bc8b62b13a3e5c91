package qemu

import (
	"encoding/base64"
	"path/filepath"
	"testing"
	"time"

	"github.com/ext-setup-root/ext-setup-root/internal/measure/tpmlog"
	"github.com/ext-setup-root/ext-setup-root/internal/testutil"
)

// TestQEMUMkosiMeasured boots the mkosi example image (make mkosi-image)
// through OVMF, systemd-boot and its signed UKI with a software TPM, once
// per UKI: ext-setup-root's initrd stages, and systemd's own sysroot
// units. Each boot gets a fresh copy of the disk, of the OVMF variables
// and a fresh TPM. The image's reporter prints the measurement log and the
// verity NvPCR; as in TestQEMUMeasuredBoot, each NvPCR must replay from
// its log, and the two boots' verity records must match
// (requireSameVerityRecords). The boot with ext-setup-root's UKI must also
// pass checkMkosiOursBoot.
func TestQEMUMkosiMeasured(t *testing.T) {
	m := RequireMkosi(t)
	if m == nil {
		return
	}
	testutil.RequireTool(t, "swtpm")
	records := map[string][]tpmlog.Record{}
	for _, v := range []string{MkosiOurs, MkosiSystemd} {
		disk, vars := m.Copy(t, v)
		sock := StartSWTPM(t, filepath.Join(t.TempDir(), "tpm"))
		rep := BootMkosi(t, m, disk, vars, 20*time.Minute, TPMArgs(sock)...)
		if !rep.Done {
			t.Fatalf("%s: the reporter did not finish; last console lines:\n%s\nlog %s", v, rep.Tail(60), rep.LogPath)
		}
		t.Logf("MEASURE mkosi %s measured boot: %.1f s wall (OVMF, systemd-boot, UKI, swtpm), /dev/tpmrm0 %q, StubPcrKernelImage %q",
			v, rep.Wall.Seconds(), rep.Get("tpm"), rep.Get("stub_kernel_pcr"))
		raw, err := base64.StdEncoding.DecodeString(rep.Get("measure_log_b64"))
		if err != nil {
			t.Fatalf("%s: tpm2-measure.log from the guest: %v", v, err)
		}
		nv, err := base64.StdEncoding.DecodeString(rep.Get("nvpcrs_verity_b64"))
		if err != nil {
			t.Fatalf("%s: systemd-analyze nvpcrs output from the guest: %v", v, err)
		}
		records[v] = checkMeasurements(t, "mkosi "+v, raw, string(nv))
		if v == MkosiOurs {
			checkMkosiOursBoot(t, m, rep)
		}
	}
	requireSameVerityRecords(t, records[MkosiOurs], records[MkosiSystemd])
}

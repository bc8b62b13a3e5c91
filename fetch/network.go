package fetch

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// NetworkUnits are what Flatcar's initrd starts before a download:
// networkd (DHCP on every link via the initrd's zz-default.network) and
// resolved. Nothing starts them when no image is missing, so a boot that
// needs no download waits for no network.
var NetworkUnits = []string{"systemd-networkd.service", "systemd-resolved.service"}

// networkStartTimeout bounds `systemctl start`; DNS and links coming up
// later are covered by the download's retries.
const networkStartTimeout = 30 * time.Second

// StartNetwork starts NetworkUnits with systemctl, as bootengine does,
// without waiting for network-online (the retries cover the DHCP time).
func StartNetwork(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, networkStartTimeout)
	defer cancel()
	args := append([]string{"start", "--quiet"}, NetworkUnits...)
	out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %v: %v: %s", args, err, out)
	}
	return nil
}

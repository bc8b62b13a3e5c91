package fetch

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// NetworkUnits are what Flatcar's initrd starts before a download:
// networkd (DHCP on Ethernet links via the .network file the dracut
// module installs) and resolved. Nothing starts them when no image is
// missing, so a boot that needs no download waits for no network.
var NetworkUnits = []string{"systemd-networkd.service", "systemd-resolved.service"}

// networkStartTimeout bounds each `systemctl start`; DHCP and DNS coming
// up later are covered by the download's retries.
const networkStartTimeout = 30 * time.Second

// systemctl runs systemctl with args, bounded by networkStartTimeout; a
// package variable so the unit test can record the calls.
var systemctl = func(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, networkStartTimeout)
	defer cancel()
	return exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
}

// StartNetwork starts NetworkUnits, as bootengine does, without waiting
// for network-online (the retries cover the DHCP time). Each unit is
// started on its own and only when the initrd has it: an initrd without
// resolved (an OS that does not ship it; IP-literal servers need no DNS)
// starts networkd and reports success, where `systemctl start A B` with
// B not found starts A but exits non-zero, which read as a failed
// network start. A unit that exists and fails to start is an error; the
// caller logs it and tries the download anyway.
// The start is blocking (networkd is Type=notify-reload) and safe from
// the post stage: the network units are ordered before
// initrd-switch-root.target only, nothing of theirs waits for us.
func StartNetwork(ctx context.Context) error {
	var errs []error
	for _, u := range NetworkUnits {
		out, err := systemctl(ctx, "show", "--property=LoadState", "--value", u)
		if err != nil {
			errs = append(errs, fmt.Errorf("systemctl show %s: %v: %s", u, err, out))
			continue
		}
		if strings.TrimSpace(string(out)) == "not-found" {
			continue
		}
		if out, err := systemctl(ctx, "start", "--quiet", u); err != nil {
			errs = append(errs, fmt.Errorf("systemctl start %s: %v: %s", u, err, out))
		}
	}
	return errors.Join(errs...)
}

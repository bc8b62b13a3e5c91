package abslots

import (
	"encoding/json"

	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// writeRecord stores the applied plan as JSON at file (a host path such as
// /run/ext-setup-root/abslots.json, carried across switch-root with /run),
// so that `status` can show the slot and the choices of this boot. It is
// written crash-safely: temp file, fsync, rename, fsync of the directory.
func writeRecord(file string, p *Plan) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return rootfs.WriteHostFileAtomic(file, append(b, '\n'), 0o755, 0o644)
}

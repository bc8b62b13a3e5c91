package prepare

import (
	"bytes"
	"context"
	"errors"

	"golang.org/x/sys/unix"
)

// maxMachineIDSize bounds the machine-id read (a real one is 33 bytes).
const maxMachineIDSize = 4096

// machineID removes the machine-id file when it holds the image's blank
// placeholder, so systemd generates a real one on this first boot. A file
// larger than a machine-id can be is not the placeholder.
func (r *run) machineID(context.Context) error {
	c := &r.o.Config.MachineID
	b, err := r.readSmall(c.File, false, maxMachineIDSize)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, errTooBig):
		return nil
	case err != nil:
		return err
	}
	if !bytes.Contains(b, []byte(c.Blank)) {
		return nil
	}
	if err := r.removeFile("machine-id", c.File, "blank placeholder "+c.Blank); err != nil {
		return err
	}
	r.res.MachineID = true
	return nil
}

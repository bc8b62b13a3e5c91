package boot

import (
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// FlatcarDefaultConfext is the vendor default confext of the Flatcar
// layout (/usr/lib/confexts/00-flatcar-default.raw). Flatcar's bootengine
// fails the boot when it did not merge; the boot stages do the same on a
// Flatcar root by making it essential by name.
const FlatcarDefaultConfext = "00-flatcar-default"

// FlatcarEssential is the default essential list on a Flatcar root: a
// literal name, which must exist and merge (see checkEssential).
var FlatcarEssential = []string{FlatcarDefaultConfext}

// IsFlatcarRoot reports whether root has the Flatcar layout: its
// os-release (resolved inside the root, /etc first as systemd reads it)
// says ID=flatcar or lists flatcar in ID_LIKE. An unreadable os-release is
// an error for the caller to log; it is then not treated as Flatcar.
func IsFlatcarRoot(root string) (bool, error) {
	r, err := rootfs.Open(root)
	if err != nil {
		return false, err
	}
	defer r.Close()
	host, err := release.LoadHost(func(p string) (*os.File, error) {
		return r.Open(p, unix.O_RDONLY, 0)
	}, "")
	if err != nil {
		return false, err
	}
	return host.ID == "flatcar" || slices.Contains(host.IDLike, "flatcar"), nil
}

package record

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ext-setup-root/ext-setup-root/oplog"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// State is ext-setup-root's own record of the last merge or refresh of
// a class in a root, kept OUTSIDE the root under paths.StateDir (never in
// origin, which must stay exactly systemd's). It lets refresh decide
// "unchanged" without loop devices (the verdict for each image is reused
// while the image file's identity is unchanged) and notice in-place edits
// of directory images (DirFingerprint, systemd issue 41523).
type State struct {
	Root        string `json:"root"`
	HostRelease string `json:"hostRelease"`
	Force       bool   `json:"force"`
	// Inputs is the engine's verdictInputs of the run that wrote the
	// state: a state written under another image policy, mutable mode,
	// noexec, essential list or set of trusted certificates never lends
	// its verdicts (a state file without it, from an older binary,
	// neither).
	Inputs string                `json:"inputs"`
	Images map[string]ImageState `json:"images"`
}

// ImageState is the verdict for one image with the identity it was taken for.
type ImageState struct {
	Identity    OriginExtension `json:"identity"`
	Type        string          `json:"type"`
	Accepted    bool            `json:"accepted"`
	Reason      string          `json:"reason,omitempty"`
	Fingerprint string          `json:"fingerprint,omitempty"`
}

// StatePath is the state file in dir of the class named class and the
// root at rootPath.
func StatePath(dir, class, rootPath string) string {
	sum := sha256.Sum256([]byte(rootPath))
	return filepath.Join(dir, class+"-"+hex.EncodeToString(sum[:8])+".json")
}

// maxStateFile bounds the state file read (the engine's bound for small
// files).
const maxStateFile = 16 << 20

// LoadState reads the state file p written for the root at rootPath; a
// missing or unreadable one, or one for another root, is nil.
func LoadState(p, rootPath string) *State {
	// A writer killed mid-write leaves its temp; a run that then skips
	// would never replace it (found by the fault-injection test). Called
	// under the hierarchy lock, so no writer of ours is active.
	os.Remove(filepath.Join(filepath.Dir(p), rootfs.TempName(filepath.Base(p))))
	dir, err := os.Open(filepath.Dir(p))
	if err != nil {
		return nil
	}
	defer dir.Close()
	b, err := rootfs.ReadRegular(dir, filepath.Base(p), maxStateFile, rootfs.NoFollow)
	if err != nil {
		return nil
	}
	var st State
	if json.Unmarshal(b, &st) != nil || st.Root != rootPath {
		return nil
	}
	return &st
}

// SaveState writes st to the state file p crash-safely (temp, fsync,
// rename, fsync dir), as an operation of log. Failing to save only costs
// the fast path next time.
func SaveState(log *oplog.Logger, p string, st *State) {
	op := log.Op("write state %s", p)
	b, err := json.Marshal(st)
	if err == nil {
		err = rootfs.WriteHostFileAtomic(p, b, 0o700, 0o600)
	}
	op.Finish(err)
}

// HostReleaseHash fingerprints the host release values validation uses.
func HostReleaseHash(h release.Host, scope string) string {
	keys := make([]string, 0, len(h.Fields))
	for k := range h.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := sha256.New()
	fmt.Fprintf(s, "scope=%s\x00arch=%s\x00", scope, release.UnameArchitecture())
	for _, k := range keys {
		fmt.Fprintf(s, "%s=%s\x00", k, h.Fields[k])
	}
	return hex.EncodeToString(s.Sum(nil))
}

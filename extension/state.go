package extension

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/ext-setup-root/ext-setup-root/extension/record"
	"github.com/ext-setup-root/ext-setup-root/release"
	"github.com/ext-setup-root/ext-setup-root/rootfs"
)

// runState is ext-setup-root's own record of the last merge or refresh of
// a class in a root, kept OUTSIDE the root under paths.StateDir (never in
// origin, which must stay exactly systemd's). It lets refresh decide
// "unchanged" without loop devices (the verdict for each image is reused
// while the image file's identity is unchanged) and notice in-place edits
// of directory images (DirFingerprint, systemd issue 41523).
type runState struct {
	Root        string `json:"root"`
	HostRelease string `json:"hostRelease"`
	Force       bool   `json:"force"`
	// Inputs is verdictInputs of the run that wrote the state: a state
	// written under another image policy, mutable mode, noexec, essential
	// list or set of trusted certificates never lends its verdicts (a
	// state file without it, from an older binary, neither).
	Inputs string                `json:"inputs"`
	Images map[string]imageState `json:"images"`
}

// imageState is the verdict for one image with the identity it was taken for.
type imageState struct {
	Identity    record.OriginExtension `json:"identity"`
	Type        string                 `json:"type"`
	Accepted    bool                   `json:"accepted"`
	Reason      string                 `json:"reason,omitempty"`
	Fingerprint string                 `json:"fingerprint,omitempty"`
}

// statePath is the state file of this class and root.
func (e *engine) statePath() string {
	sum := sha256.Sum256([]byte(e.rootPath))
	return filepath.Join(stateDir(), e.cls.Name+"-"+hex.EncodeToString(sum[:8])+".json")
}

// loadState reads the state file; a missing or unreadable one is nil.
func (e *engine) loadState() *runState {
	// A writer killed mid-write leaves its temp; a run that then skips
	// would never replace it (found by the fault-injection test). Called
	// under the hierarchy lock, so no writer of ours is active.
	p := e.statePath()
	os.Remove(filepath.Join(filepath.Dir(p), rootfs.TempName(filepath.Base(p))))
	dir, err := os.Open(filepath.Dir(p))
	if err != nil {
		return nil
	}
	defer dir.Close()
	b, err := rootfs.ReadRegular(dir, filepath.Base(p), maxSmallFile, rootfs.NoFollow)
	if err != nil {
		return nil
	}
	var st runState
	if json.Unmarshal(b, &st) != nil || st.Root != e.rootPath {
		return nil
	}
	return &st
}

// saveState writes the state file crash-safely (temp, fsync, rename,
// fsync dir). Failing to save only costs the fast path next time.
func (e *engine) saveState(st *runState) {
	op := e.log.Op("write state %s", e.statePath())
	b, err := json.Marshal(st)
	if err == nil {
		err = rootfs.WriteHostFileAtomic(e.statePath(), b, 0o700, 0o600)
	}
	op.Finish(err)
}

// hostReleaseHash fingerprints the host release values validation uses.
func hostReleaseHash(h release.Host, scope string) string {
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

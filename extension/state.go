package extension

import "github.com/ext-setup-root/ext-setup-root/extension/record"

// statePath is the state file of this class and root (record.State).
func (e *engine) statePath() string { return record.StatePath(stateDir(), e.cls.Name, e.rootPath) }

// loadState reads the state file; a missing or unreadable one is nil.
func (e *engine) loadState() *record.State { return record.LoadState(e.statePath(), e.rootPath) }

// saveState writes the state file crash-safely; failing to save only costs
// the fast path next time.
func (e *engine) saveState(st *record.State) { record.SaveState(e.log, e.statePath(), st) }

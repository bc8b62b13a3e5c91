package qemu

import (
	"strings"
	"time"
)

// Marker is the prefix of the reporter's result lines on the console:
// "EXTSR-RESULT key=value".
const Marker = "EXTSR-RESULT "

// Report is what a boot printed: every console line, and the reporter's
// key=value facts (a key may repeat, for example one line per journal entry).
type Report struct {
	Lines    []string
	Values   map[string][]string
	Done     bool // the reporter printed its final marker
	Wall     time.Duration
	TimedOut bool
	LogPath  string
	// Cut: the host cut the power (BootSpec.OnLine), CutAfter after QEMU
	// started.
	Cut      bool
	CutAfter time.Duration
}

// add records one console line's marker, if it has one.
func (r *Report) add(line string) {
	i := strings.Index(line, Marker)
	if i < 0 {
		return
	}
	kv := line[i+len(Marker):]
	k, v, _ := strings.Cut(kv, "=")
	k = strings.TrimSpace(k)
	if k == "done" {
		r.Done = true
	}
	r.Values[k] = append(r.Values[k], v)
}

// Get returns the last value reported for key, or "".
func (r *Report) Get(key string) string {
	v := r.Values[key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// All returns every value reported for key.
func (r *Report) All(key string) []string { return r.Values[key] }

// AnyContains reports whether some value of key contains sub.
func (r *Report) AnyContains(key, sub string) bool {
	for _, v := range r.Values[key] {
		if strings.Contains(v, sub) {
			return true
		}
	}
	return false
}

// Tail returns the last n console lines, for failure messages.
func (r *Report) Tail(n int) string {
	l := r.Lines
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

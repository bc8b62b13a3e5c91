package qemu

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Machine is a test disk booted one or more times through the dracut
// initramfs with our module.
type Machine struct {
	t      *testing.T
	in     *Inputs
	initrd string
	disk   string
	// Timeout bounds each boot (0: BootSpec's default). Long boots
	// (a daemon-reload in the booted system, a loaded machine) set more.
	Timeout time.Duration
	// NIC is BootSpec.NIC for every boot ("": no network).
	NIC string
}

// NewMachine builds the initramfs (cached) and the disk of spec.
func NewMachine(t *testing.T, in *Inputs, spec DiskSpec) *Machine {
	t.Helper()
	return NewMachineWith(t, in, spec, InitrdSpec{Ours: true})
}

// NewMachineWith is NewMachine with a chosen initramfs.
func NewMachineWith(t *testing.T, in *Inputs, spec DiskSpec, is InitrdSpec) *Machine {
	t.Helper()
	start := time.Now()
	initrd := InitrdFor(t, in, is)
	disk := Disk(t, in, spec)
	t.Logf("image build: %.1f s (initramfs and disk)", time.Since(start).Seconds())
	return &Machine{t: t, in: in, initrd: initrd, disk: disk}
}

// Boot boots slot ("A" or "B") with extra kernel command line, requires the
// reporter to finish and logs the guest time per ext-setup-root stage.
func (m *Machine) Boot(slot, extra string) *Report {
	m.t.Helper()
	rep := Boot(m.t, m.in, BootSpec{Initrd: m.initrd, Disk: m.disk, Cmdline: Cmdline(slot) + " " + extra, Timeout: m.Timeout, NIC: m.NIC})
	if !rep.Done {
		m.t.Fatalf("slot %s: the guest reporter did not finish (boot failed or hung); last console lines:\n%s\nfull log: %s", slot, rep.Tail(80), rep.LogPath)
	}
	st := rep.Stages()
	var parts []string
	for _, name := range []string{"pre", "post", "late-confext", "late-sysext"} {
		if s, ok := st[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s in %d ms", name, s.Result, s.Millis))
		}
	}
	m.t.Logf("slot %s: boot %.1f s wall, reporter at guest uptime %s s; guest time in ext-setup-root: %s",
		slot, rep.Wall.Seconds(), rep.Get("uptime"), strings.Join(parts, ", "))
	return rep
}

// StageResult is one "stage NAME finished|failed in Nms (...)" summary.
type StageResult struct {
	Result string // finished or failed
	Millis int
	Line   string
}

var stageRE = regexp.MustCompile(`stage (\S+) (finished|failed) in (\d+)ms`)

// Stages parses ext-setup-root's stage summary lines from the guest
// journal (identifier ext-setup-root, or the units' output).
func (r *Report) Stages() map[string]StageResult {
	out := map[string]StageResult{}
	for _, key := range []string{"esr_unit", "esr_log", "esr_kmsg"} {
		for _, l := range r.All(key) {
			if m := stageRE.FindStringSubmatch(l); m != nil {
				ms, _ := strconv.Atoi(m[3])
				out[m[1]] = StageResult{Result: m[2], Millis: ms, Line: l}
			}
		}
	}
	return out
}

// RequireStagesFinished fails t unless the pre and post stages both logged a
// "finished" summary.
func RequireStagesFinished(t *testing.T, r *Report) {
	t.Helper()
	st := r.Stages()
	for _, name := range []string{"pre", "post"} {
		s, ok := st[name]
		if !ok {
			t.Errorf("no summary of stage %s in the guest journal; ext-setup-root lines:\n%s", name, strings.Join(append(append(r.All("esr_unit"), r.All("esr_log")...), r.All("esr_kmsg")...), "\n"))
			continue
		}
		if s.Result != "finished" {
			t.Errorf("stage %s: %s", name, s.Line)
		}
	}
}

// RequireNoFailedUnits fails t if the guest listed failed units.
func RequireNoFailedUnits(t *testing.T, r *Report) {
	t.Helper()
	if f := r.All("failed"); len(f) > 0 {
		t.Errorf("failed units in the guest: %s", strings.Join(f, "; "))
	}
}

// RequireLink fails t unless the guest reported /etc/extensions/name -> target.
func RequireLink(t *testing.T, r *Report, name, target string) {
	t.Helper()
	want := name + " -> " + target
	for _, l := range r.All("link") {
		if l == want {
			return
		}
	}
	t.Errorf("link %s missing; links: %q", want, r.All("link"))
}

// HasImage reports whether the guest listed the image path.
func (r *Report) HasImage(p string) bool {
	for _, l := range r.All("image") {
		if l == p {
			return true
		}
	}
	return false
}

var mergeIDRE = regexp.MustCompile(`^(confext|sysext) merge at /sysroot(/\S+) is mount id (\d+)$`)

// InitrdMountID returns the mount id of the last merge of class that
// ext-setup-root attached at /sysroot+h in the initrd (from its own log
// line "CLASS merge at /sysroot/H is mount id N"), or "" if it logged none.
func (r *Report) InitrdMountID(class, h string) string {
	for _, key := range []string{"esr_log", "esr_unit", "esr_kmsg"} {
		id := ""
		for _, l := range r.All(key) {
			if m := mergeIDRE.FindStringSubmatch(l); m != nil && m[1] == class && m[2] == h {
				id = m[3]
			}
		}
		if id != "" {
			return id
		}
	}
	return ""
}

// RequireRefreshSkipped fails t unless the booted system's
// systemd-<class> refresh left the initrd's merge at h in place: it
// logged its skip line, no merge, and h in the booted system is still the
// very overlay ext-setup-root attached in the initrd (same mount id;
// switch-root moves mounts, it does not recreate them).
func RequireRefreshSkipped(t *testing.T, r *Report, boot int, class, h string) {
	t.Helper()
	jkey, idkey := class+"_journal", strings.TrimPrefix(h, "/")+"_mount_id"
	if r.AnyContains(jkey, "Merged extensions into") || r.AnyContains(jkey, "Unmerged '"+h+"'") {
		t.Errorf("boot %d: systemd-%s merged again instead of skipping: %q", boot, class, r.All(jkey))
	}
	if !r.AnyContains(jkey, "Skipping extension refresh") {
		t.Errorf("boot %d: no skip in systemd-%s's journal: %q", boot, class, r.All(jkey))
	}
	want, got := r.InitrdMountID(class, h), r.Get(idkey)
	switch {
	case want == "":
		t.Errorf("boot %d: ext-setup-root logged no '%s merge at /sysroot%s is mount id N' line", boot, class, h)
	case got != want:
		t.Errorf("boot %d: %s is mount id %q in the booted system, but the initrd's %s merge was mount id %s: something replaced it", boot, h, got, class, want)
	}
}

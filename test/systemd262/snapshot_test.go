package systemd262

import "testing"

// TestDiffDetects proves that the (c) comparison can fail: each kind of
// difference between two snapshots is reported, and equal ones are not.
func TestDiffDetects(t *testing.T) {
	base := func() *Snapshot {
		return &Snapshot{
			Tree: map[string]FileInfo{"a.conf": {Type: "f", Mode: 0o644, Content: "a\n"}},
			Meta: map[string]FileInfo{
				"":         {Type: "d", Mode: 0o755},
				"dev":      {Type: "f", Mode: 0o644, Content: "0:41\n"},
				"confexts": {Type: "f", Mode: 0o644, Content: "a\n"},
				"origin":   {Type: "f", Mode: 0o644, Content: "{}\n"},
			},
			Origin: map[string]any{"mutable": map[string]any{"mode": "yes"}},
			EtcDev: "0:41",
			Mounts: []MountEntry{{MountPoint: "/etc", Options: "rw,nosuid", FSType: "overlay", Source: "confext", SuperOptions: "rw,upperdir=/x"}},
		}
	}
	if d := Diff(base(), base(), "a", "b"); len(d) != 0 {
		t.Fatalf("equal snapshots reported different: %v", d)
	}
	other := base()
	other.EtcDev, other.Meta["dev"] = "0:42", FileInfo{Type: "f", Mode: 0o644, Content: "0:42\n"}
	if d := Diff(base(), other, "a", "b"); len(d) != 0 {
		t.Errorf("dev values differ legitimately (fresh anonymous device), but: %v", d)
	}
	for name, mutate := range map[string]func(s *Snapshot){
		"tree content":  func(s *Snapshot) { s.Tree["a.conf"] = FileInfo{Type: "f", Mode: 0o644, Content: "b\n"} },
		"tree mode":     func(s *Snapshot) { s.Tree["a.conf"] = FileInfo{Type: "f", Mode: 0o600, Content: "a\n"} },
		"tree owner":    func(s *Snapshot) { s.Tree["a.conf"] = FileInfo{Type: "f", Mode: 0o644, UID: 1, Content: "a\n"} },
		"tree extra":    func(s *Snapshot) { s.Tree["b.conf"] = FileInfo{Type: "f"} },
		"meta missing":  func(s *Snapshot) { delete(s.Meta, "confexts") },
		"meta extra":    func(s *Snapshot) { s.Meta["backing"] = FileInfo{Type: "f", Content: "7:0\n"} },
		"dev mismatch":  func(s *Snapshot) { s.Meta["dev"] = FileInfo{Type: "f", Mode: 0o644, Content: "0:40\n"} },
		"origin":        func(s *Snapshot) { s.Origin = map[string]any{"mutable": map[string]any{"mode": "no"}} },
		"mount options": func(s *Snapshot) { s.Mounts[0].Options = "rw,relatime" },
		"mount count":   func(s *Snapshot) { s.Mounts = append(s.Mounts, s.Mounts[0]) },
		"work dir":      func(s *Snapshot) { s.WorkDirExists = true },
	} {
		s := base()
		mutate(s)
		d := Diff(base(), s, "systemd", "ours")
		if len(d) == 0 {
			t.Errorf("%s: difference not reported", name)
		}
	}
}

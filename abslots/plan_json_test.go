package abslots

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPlanJSONEmptyLists: every list of a plan is [] when empty, never
// null (issue 10: `plan --json` printed "actions": null).
func TestPlanJSONEmptyLists(t *testing.T) {
	for _, p := range []any{Plan{}, &Plan{Version: "1"}} {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.Contains(s, "null") {
			t.Errorf("null in %s", s)
		}
		for _, k := range []string{`"choices":[]`, `"actions":[]`, `"missing":[]`, `"problems":[]`} {
			if !strings.Contains(s, k) {
				t.Errorf("%s missing in %s", k, s)
			}
		}
		var back Plan
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	}
	// A filled plan keeps its lists.
	b, _ := json.Marshal(Plan{Actions: []Action{{Op: OpSymlink, Path: "/x", Reason: "r"}}})
	if !strings.Contains(string(b), `"actions":[{"op":"symlink"`) {
		t.Errorf("filled plan: %s", b)
	}
}

package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stubGo writes a stand-in for the go command that fuzz.sh runs: each
// call appends a line to calls and prints what mode says.
func stubGo(t *testing.T, mode string) (bin, calls string) {
	t.Helper()
	d := t.TempDir()
	calls = filepath.Join(d, "calls")
	race := `echo "fuzz: elapsed: 3s, execs: 100 (0/sec), new interesting: 0 (total: 1)"
echo "--- FAIL: FuzzX (3.10s)"
echo "    context deadline exceeded"
echo FAIL; exit 1`
	var body string
	switch mode {
	case "race-once": // the deadline race on a target's first run only
		body = `n=$(grep -cxF -- "$*" "$CALLS"); if [ "$n" -eq 1 ]; then ` + race + `; fi
echo "fuzz: elapsed: 3s, execs: 5 (2/sec)"; exit 0`
	case "race-always":
		body = race
	case "crasher": // a real failure that also says "context deadline exceeded"
		body = `echo "--- FAIL: FuzzX (0.10s)"
echo "    context deadline exceeded"
echo "    Failing input written to testdata/fuzz/FuzzX/abc"
exit 1`
	}
	bin = filepath.Join(d, "go")
	script := "#!/bin/bash\necho \"$*\" >> \"$CALLS\"\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, calls
}

// TestFuzzRetriesOnlyTheDeadlineRace: scripts/fuzz.sh runs a target again
// when it failed with nothing but Go's end-of-fuzztime deadline race
// (go.dev/issue/75804), at most three runs in all, and never when an input
// failed.
func TestFuzzRetriesOnlyTheDeadlineRace(t *testing.T) {
	for _, c := range []struct {
		mode     string
		exit     int
		perCall  int // go calls per target
		inResult string
	}{
		{"race-once", 0, 2, "clean (run 2; deadline race before)"},
		{"race-always", 1, 3, "FAILED"},
		{"crasher", 1, 1, "FAILED"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			bin, calls := stubGo(t, c.mode)
			out := filepath.Join(t.TempDir(), "fuzz.md")
			cmd := exec.Command("bash", "../../scripts/fuzz.sh")
			cmd.Env = append(os.Environ(), "GO="+bin, "CALLS="+calls, "OUT="+out, "FUZZTIME=1s")
			b, err := cmd.CombinedOutput()
			exit := 0
			if ee, ok := err.(*exec.ExitError); ok {
				exit = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if exit != c.exit {
				t.Fatalf("fuzz.sh exit %d, want %d:\n%s", exit, c.exit, b)
			}
			table, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			rows := 0
			for _, l := range strings.Split(string(table), "\n") {
				if strings.Contains(l, "| Fuzz") {
					rows++
					if !strings.Contains(l, "| "+c.inResult+" |") {
						t.Errorf("row %q, want result %q", l, c.inResult)
					}
				}
			}
			cl, _ := os.ReadFile(calls)
			if n := strings.Count(string(cl), "\n"); rows == 0 || n != rows*c.perCall {
				t.Fatalf("%d go calls for %d targets, want %d each", n, rows, c.perCall)
			}
		})
	}
}

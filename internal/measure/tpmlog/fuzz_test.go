package tpmlog

import (
	"strings"
	"testing"
)

// FuzzRead feeds arbitrary logs to the reader, the verity checks, the
// replay and the comparison: no panic, and every record Read returns
// obeys the bounds.
func FuzzRead(f *testing.F) {
	f.Add(pcrRec + verityRec(word("loop0p1-9-verity"), bootA, 1))
	f.Add(verityRec(`verity:a\x3ab:`+rootHash+":", bootB, 2))
	f.Add("\x1e{\"nv_index\":30474754,\"content\":{\"string\":\"\\\\x\"}}\n")
	f.Add("\x1e\n\x1e{}\n")
	f.Fuzz(func(t *testing.T, log string) {
		recs, err := Read(strings.NewReader(log), "fuzz.log")
		if err != nil {
			return
		}
		if len(recs) > MaxRecords {
			t.Fatalf("%d records", len(recs))
		}
		v := Verity(recs)
		_, _ = Replay(V262Start, v)
		_ = Compare(v, v)
		for _, r := range v {
			k, err := KeyOf(r)
			if (err == nil) != (CheckVerity(r) == nil) {
				t.Fatalf("KeyOf and CheckVerity disagree on record %d: %v", r.Seq, err)
			}
			if err == nil && !strings.HasPrefix(k.Word, "verity:") {
				t.Fatalf("key word %q", k.Word)
			}
		}
	})
}

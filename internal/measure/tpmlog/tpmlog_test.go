package tpmlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

const (
	rootHash = "2ba7b7a1fdc0a25a2ee7cd9e7c7a1f3b7a2f1d4e5c6b7a8990a1b2c3d4e5f6a7"
	signers  = "0214157c3cd35c09e2cb2c1a6db21a39bc2c5b8c9d01/MBIxEDAOBgNVBAMMB3Rlc3Qga2V5"
	bootA    = "0123456789abcdef0123456789abcdef"
	bootB    = "fedcba9876543210fedcba9876543210"
)

// verityRec returns the record systemd writes for word, as one JSON-SEQ
// record (0x1E, JSON in systemd's key order, "\n").
func verityRec(word, boot string, ts uint64) string {
	sum := sha256.Sum256([]byte(word))
	s, _ := json.Marshal(strings.ReplaceAll(word, `\`, `\\`))
	return "\x1e" + `{"nv_index":30474754,"digests":[{"hashAlg":"sha256","digest":"` + hex.EncodeToString(sum[:]) +
		`"}],"content_type":"systemd","content":{"nvIndexName":"verity","string":` + string(s) +
		`,"bootId":"` + boot + `","timestamp":` + itoa(ts) + `,"eventType":"dm-verity"}}` + "\n"
}

func itoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// pcrRec is a PCR record as systemd-pcrphase writes it.
const pcrRec = "\x1e" + `{"pcr":11,"digests":[{"hashAlg":"sha256","digest":"` +
	"8c8e18d7a0e1e6ab4a4a7e6f1d4be0e0d7a7b2b0f0d6b5c4d3e2f1a0b9c8d7e6" +
	`"}],"content_type":"systemd","content":{"string":"enter-initrd","bootId":"` + bootA + `","timestamp":1200,"eventType":"phase"}}` + "\n"

func word(name string) string { return "verity:" + name + ":" + rootHash + ":" + signers }

func mustRead(t *testing.T, log string) []Record {
	t.Helper()
	recs, err := Read(strings.NewReader(log), "tpm2-measure.log")
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestReadAndVerity(t *testing.T) {
	log := pcrRec + verityRec(word("loop0p1-9-verity"), bootA, 5000) + verityRec(word("loop1p1-12-verity"), bootA, 6000)
	recs := mustRead(t, log)
	if len(recs) != 3 || recs[0].PCR == nil || *recs[0].PCR != 11 {
		t.Fatalf("records %+v", recs)
	}
	v := Verity(recs)
	if len(v) != 2 || v[0].Seq != 1 || v[1].Seq != 2 {
		t.Fatalf("verity records %+v", v)
	}
	if v[0].Content.BootID != bootA || v[0].Content.Timestamp != 5000 || v[0].Content.EventType != "dm-verity" || *v[0].NvIndex != VerityNvIndex {
		t.Fatalf("fields %+v", v[0])
	}
	for _, r := range v {
		if err := CheckVerity(r); err != nil {
			t.Error(err)
		}
	}
}

func TestReadRejects(t *testing.T) {
	good := verityRec(word("loop0p1-9-verity"), bootA, 1)
	for name, log := range map[string]string{
		"no separator":     strings.TrimPrefix(good, "\x1e"),
		"no newline":       strings.TrimSuffix(good, "\n"),
		"not JSON":         "\x1e{nope}\n",
		"two values":       "\x1e{\"pcr\":1} {\"pcr\":2}\n",
		"neither index":    "\x1e{\"digests\":[]}\n",
		"both indexes":     "\x1e{\"pcr\":1,\"nv_index\":2}\n",
		"negative index":   "\x1e{\"nv_index\":-1}\n",
		"oversized record": "\x1e{\"pcr\":1,\"x\":\"" + strings.Repeat("a", MaxRecordSize) + "\"}\n",
		"trailing garbage": good + "x",
	} {
		if _, err := Read(strings.NewReader(log), "tpm2-measure.log"); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "tpm2-measure.log") {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
	many := strings.Repeat("\x1e{\"pcr\":1}\n", MaxRecords+1)
	if _, err := Read(strings.NewReader(many), "log"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("record count not bounded: %v", err)
	}
	if recs, err := Read(strings.NewReader(strings.Repeat("\x1e{\"pcr\":1}\n", MaxRecords)), "log"); err != nil || len(recs) != MaxRecords {
		t.Errorf("%d records (the bound) refused: %v", MaxRecords, err)
	}
}

// edit returns the single record of log with f applied to its decoded
// form, so that each check can be broken on its own.
func edit(t *testing.T, log string, f func(*Record)) Record {
	t.Helper()
	r := mustRead(t, log)[0]
	f(&r)
	return r
}

func TestCheckVerityEachRule(t *testing.T) {
	good := verityRec(word("loop0p1-9-verity"), bootA, 77)
	if err := CheckVerity(mustRead(t, good)[0]); err != nil {
		t.Fatal(err)
	}
	other := uint32(VerityNvIndex + 1)
	cases := map[string]func(*Record){
		"nv_index":       func(r *Record) { r.NvIndex = &other },
		"pcr record":     func(r *Record) { r.NvIndex = nil },
		"content_type":   func(r *Record) { r.ContentType = "systemd-x" },
		"nvIndexName":    func(r *Record) { r.Content.NvIndexName = "login" },
		"eventType":      func(r *Record) { r.Content.EventType = "dm_verity" },
		"bootId":         func(r *Record) { r.Content.BootID = "xyz" },
		"timestamp":      func(r *Record) { r.Content.Timestamp = 0 },
		"two digests":    func(r *Record) { r.Digests = append(r.Digests, r.Digests[0]) },
		"hashAlg":        func(r *Record) { r.Digests[0].HashAlg = "sha1" },
		"digest hex":     func(r *Record) { r.Digests[0].Digest = "zz" },
		"digest upper":   func(r *Record) { r.Digests[0].Digest = strings.ToUpper(r.Digests[0].Digest) },
		"digest value":   func(r *Record) { r.Content.String = word("loop0p1-10-verity") },
		"word shape":     func(r *Record) { r.Content.String = "verity:x" },
		"word prefix":    func(r *Record) { r.Content.String = "cryptsetup:a:" + rootHash + ":" },
		"root hash":      func(r *Record) { r.Content.String = "verity:x:XYZ:" },
		"empty name":     func(r *Record) { r.Content.String = "verity::" + rootHash + ":" },
		"bad escape":     func(r *Record) { r.Content.String = `verity:a\q:` + rootHash + ":" },
		"cut string":     func(r *Record) { r.Content.String = word(strings.Repeat("n", maxStringLen)) + "..." },
		"lone backslash": func(r *Record) { r.Content.String = `verity:a:` + rootHash + `:\` },
	}
	for name, f := range cases {
		if err := CheckVerity(edit(t, good, f)); err == nil {
			t.Errorf("%s: broken record accepted", name)
		}
	}
}

func TestWordUnescape(t *testing.T) {
	// systemd xescapes ':' in the dm name (\x3a); the log then C-escapes
	// the backslash. The digest is of the word before the log's escaping.
	w := `verity:odd\x3aname-verity:` + rootHash + ":"
	r := mustRead(t, verityRec(w, bootA, 1))[0]
	if !strings.Contains(r.Content.String, `\\x3a`) {
		t.Fatalf("test log not escaped: %q", r.Content.String)
	}
	got, err := r.Word()
	if err != nil || got != w {
		t.Fatalf("Word() = %q, %v; want %q", got, err, w)
	}
	if err := CheckVerity(r); err != nil {
		t.Fatal(err)
	}
}

func TestReplay(t *testing.T) {
	// The v262 start value is SHA256 of 64 zero bytes: a fresh index
	// (all zeroes) extended with 32 zero bytes.
	zero := sha256.Sum256(make([]byte, 64))
	if hex.EncodeToString(zero[:]) != V262Start {
		t.Fatalf("V262Start is not SHA256(0^64): %x", zero)
	}
	w1, w2 := word("loop0p1-9-verity"), word("loop1p1-12-verity")
	recs := Verity(mustRead(t, pcrRec+verityRec(w1, bootA, 1)+verityRec(w2, bootA, 2)))
	// Independent computation: V = SHA256(V || SHA256(word)).
	v := zero[:]
	for _, w := range []string{w1, w2} {
		d := sha256.Sum256([]byte(w))
		n := sha256.Sum256(append(append([]byte{}, v...), d[:]...))
		v = n[:]
	}
	got, err := Replay(V262Start, recs)
	if err != nil || got != hex.EncodeToString(v) {
		t.Fatalf("Replay = %s, %v; want %x", got, err, v)
	}
	// Order matters, as in the TPM.
	if swapped, _ := Replay(V262Start, []Record{recs[1], recs[0]}); swapped == got {
		t.Error("replay does not depend on the order")
	}
	if empty, _ := Replay(V262Start, nil); empty != V262Start {
		t.Errorf("replay of no records = %s", empty)
	}
	bad := recs[1]
	bad.Digests = []Digest{{HashAlg: "sha256", Digest: strings.Repeat("00", 32)}}
	if _, err := Replay(V262Start, []Record{recs[0], bad}); err == nil || !strings.Contains(err.Error(), "not SHA256 of the word") {
		t.Errorf("replay accepted a digest that is not the word's: %v", err)
	}
	if _, err := Replay("abc", recs); err == nil {
		t.Error("bad start accepted")
	}
}

func TestCompare(t *testing.T) {
	named := func(boot string, names ...string) []Record {
		var log bytes.Buffer
		for i, n := range names {
			log.WriteString(verityRec(word(n), boot, uint64(100+i)))
		}
		return Verity(mustRead(t, log.String()))
	}
	// systemd 262: two activations (two devices) of the same image per
	// merge; ours: one, on another disk sequence and boot.
	sys := named(bootB, "loop0p1-11-verity", "loop1p1-15-verity")
	ours := named(bootA, "loop0p1-11-verity", "loop0p1-14-verity")
	if errs := Compare(ours, sys); len(errs) != 0 {
		t.Fatalf("equal modulo loop number, disk sequence, boot ID and timestamp: %v", errs)
	}
	if errs := Compare(named(bootA, "loop7p1-3-verity"), sys); len(errs) != 0 {
		t.Fatalf("one activation against systemd's two: %v", errs)
	}
	cases := map[string][]Record{
		"not a loop device":  named(bootA, "vda1-13-verity"),
		"no disk sequence":   named(bootA, "loop0p1-verity"),
		"other partition":    named(bootA, "loop0p2-13-verity"),
		"shared name":        named(bootA, rootHash+"-verity"),
		"no record":          nil,
		"extra distinct one": named(bootA, "loop0p1-13-verity", "loop5p2-1-verity"),
	}
	for name, o := range cases {
		if errs := Compare(o, sys); len(errs) == 0 {
			t.Errorf("%s: no difference found", name)
		}
	}
	// A field other than the word differs.
	mod := named(bootA, "loop0p1-13-verity")
	mod[0].Content.EventType = "dm_verity"
	if errs := Compare(mod, sys); len(errs) == 0 {
		t.Error("event type difference not found")
	}
	// Other signers, other root hash.
	for _, w := range []string{
		"verity:loop0p1-13-verity:" + rootHash + ":",
		"verity:loop0p1-13-verity:" + strings.Repeat("ab", 32) + ":" + signers,
	} {
		if errs := Compare(Verity(mustRead(t, verityRec(w, bootA, 1))), sys); len(errs) == 0 {
			t.Errorf("%s: no difference found", w)
		}
	}
}

func TestNvPCRValue(t *testing.T) {
	v := strings.Repeat("ab", 32)
	for _, out := range []string{
		// As systemd-analyze 262 printed it in the measured QEMU boot.
		`[{"name":"verity","nvindex":30474754,"priority":300,"value":"` + v + `"}] `,
		`{"name":"verity","nvindex":30474754,"value":"` + strings.ToUpper(v) + `"}`,
	} {
		if got, err := NvPCRValue(strings.NewReader(out), "verity"); err != nil || got != v {
			t.Errorf("%s: %q, %v", out, got, err)
		}
	}
	for _, out := range []string{
		`[{"name":"login","value":"` + v + `"}]`,
		`[{"name":"verity","value":""}]`,
		`[{"name":"verity","value":"abc"}]`,
		`nope`,
		`[` + strings.Repeat(" ", maxNvPCRsOutput) + `]`,
	} {
		if _, err := NvPCRValue(strings.NewReader(out), "verity"); err == nil {
			t.Errorf("%.60s: accepted", out)
		}
	}
}

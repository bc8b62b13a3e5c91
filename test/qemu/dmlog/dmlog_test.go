package dmlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// logBuilder writes a log in the kernel's layout (512-byte sectors).
type logBuilder struct {
	ss      int
	entries [][]byte
}

func (b *logBuilder) add(sector, sectors uint64, flags Flags, mark string, data []byte) {
	h := make([]byte, b.ss)
	le := binary.LittleEndian
	le.PutUint64(h, sector)
	le.PutUint64(h[8:], sectors)
	le.PutUint64(h[16:], uint64(flags))
	le.PutUint64(h[24:], uint64(len(mark)))
	copy(h[32:], mark)
	b.entries = append(b.entries, append(h, data...))
}

func (b *logBuilder) write(sector uint64, fill byte, n int) {
	b.add(sector, uint64(n), 0, "", bytes.Repeat([]byte{fill}, n*b.ss))
}

func (b *logBuilder) bytes(nEntries uint64) []byte {
	s := make([]byte, b.ss)
	le := binary.LittleEndian
	le.PutUint64(s, Magic)
	le.PutUint64(s[8:], Version)
	le.PutUint64(s[16:], nEntries)
	le.PutUint32(s[24:], uint32(b.ss))
	return append(s, bytes.Join(b.entries, nil)...)
}

// memDev is a bounded in-memory device.
type memDev []byte

func (m memDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, errors.New("out of range")
	}
	return copy(m[off:], p), nil
}

// sample: w(0)=a, w(1)=b, FLUSH, mark "m", w(2)=c, FUA w(3)=d, w(0)=e, FLUSH.
func sample() *logBuilder {
	b := &logBuilder{ss: 512}
	b.write(0, 'a', 1)
	b.write(1, 'b', 1)
	b.add(0, 0, Flush, "", nil)
	b.add(0, 0, Mark, "m", nil)
	b.write(2, 'c', 1)
	b.add(3, 1, FUA, "", bytes.Repeat([]byte{'d'}, 512))
	b.write(0, 'e', 1)
	b.add(0, 0, Flush, "", nil)
	return b
}

func firstBytes(d memDev) string {
	var s strings.Builder
	for i := 0; i < len(d); i += 512 {
		if d[i] == 0 {
			s.WriteByte('.')
		} else {
			s.WriteByte(d[i])
		}
	}
	return s.String()
}

func TestScanAndReplayUpToEachFlush(t *testing.T) {
	raw := sample().bytes(8)
	lim := Limits{DevSectors: 4}
	sup, ents, err := Scan(bytes.NewReader(raw), lim)
	if err != nil {
		t.Fatal(err)
	}
	if sup.Entries != 8 || sup.SectorSize != 512 || len(ents) != 8 {
		t.Fatalf("super %+v, %d entries", sup, len(ents))
	}
	if ents[3].Mark != "m" || ents[5].Flags != FUA {
		t.Errorf("entries %+v", ents)
	}
	fl := Flushes(ents)
	if len(fl) != 2 || fl[0] != 2 || fl[1] != 7 {
		t.Fatalf("flushes at %v, want [2 7]", fl)
	}
	for _, c := range []struct {
		upto uint64
		want string
	}{{2, "ab.."}, {7, "ebcd"}, {4, "abc."}} {
		dev := make(memDev, 4*512)
		st, err := Replay(bytes.NewReader(raw), lim, dev, Upto(c.upto))
		if err != nil {
			t.Fatal(err)
		}
		if got := firstBytes(dev); got != c.want {
			t.Errorf("replay up to entry %d: device %q, want %q (stats %+v)", c.upto, got, c.want, st)
		}
	}
}

func TestUnflushedKeepsPrefixAndFUA(t *testing.T) {
	ents := []Entry{{Index: 0, Flags: Flush}}
	for i := uint64(1); i <= 40; i++ {
		f := Flags(0)
		if i%5 == 0 {
			f = FUA
		}
		ents = append(ents, Entry{Index: i, Sector: i, Sectors: 1, Flags: f})
	}
	ents = append(ents, Entry{Index: 41, Flags: Flush})
	sawDrop, sawKeep := false, false
	for seed := range uint64(50) {
		p, kept, window := Unflushed(ents, 0, seed)
		if window != 40 || p.Upto != 0 {
			t.Fatalf("window %d upto %d", window, p.Upto)
		}
		if kept != len(p.Extra) {
			t.Fatalf("kept %d, extra %d", kept, len(p.Extra))
		}
		last := uint64(0)
		for i := range p.Extra {
			last = max(last, i)
		}
		for i := uint64(1); i < last; i++ {
			if i%5 == 0 && !p.Extra[i] {
				t.Errorf("seed %d: FUA write %d before the cut (%d) dropped", seed, i, last)
			}
			if i%5 != 0 {
				sawDrop = sawDrop || !p.Extra[i]
				sawKeep = sawKeep || p.Extra[i]
			}
		}
		if p.Extra[41] {
			t.Errorf("seed %d: the next flush was kept", seed)
		}
		q, _, _ := Unflushed(ents, 0, seed)
		if len(q.Extra) != len(p.Extra) {
			t.Errorf("seed %d: not repeatable", seed)
		}
	}
	if !sawDrop || !sawKeep {
		t.Errorf("plain writes never dropped (%v) or never kept (%v)", !sawDrop, !sawKeep)
	}
}

func TestReplayUnflushedWritesOnlyChosen(t *testing.T) {
	raw := sample().bytes(8)
	dev := make(memDev, 4*512)
	// After the first flush: c (4) and e (6), not the FUA d (5).
	p := Plan{Upto: 2, Extra: map[uint64]bool{4: true, 6: true}}
	if _, err := Replay(bytes.NewReader(raw), Limits{DevSectors: 4}, dev, p); err != nil {
		t.Fatal(err)
	}
	if got := firstBytes(dev); got != "ebc." {
		t.Errorf("device %q, want ebc.", got)
	}
}

func TestReaderRejects(t *testing.T) {
	good := sample()
	bad := func(mod func(b []byte) []byte) []byte { return mod(good.bytes(8)) }
	le := binary.LittleEndian
	cases := map[string]struct {
		raw  []byte
		lim  Limits
		want string
	}{
		"magic":       {bad(func(b []byte) []byte { b[0] ^= 1; return b }), Limits{DevSectors: 4}, "magic"},
		"version":     {bad(func(b []byte) []byte { le.PutUint64(b[8:], 2); return b }), Limits{DevSectors: 4}, "version 2"},
		"sector size": {bad(func(b []byte) []byte { le.PutUint32(b[24:], 1000); return b }), Limits{DevSectors: 4}, "sector size 1000"},
		"count":       {good.bytes(1 << 40), Limits{DevSectors: 4}, "more than the limit"},
		"truncated":   {good.bytes(9), Limits{DevSectors: 4}, "entry 8 of 9: header: unexpected EOF"},
		"outside":     {good.bytes(8), Limits{DevSectors: 3}, "outside the 3-sector device"},
		"big write":   {good.bytes(8), Limits{DevSectors: 4, MaxWrite: 256}, "more than the limit of 256 bytes"},
		"flags":       {bad(func(b []byte) []byte { le.PutUint64(b[512+16:], 1<<9); return b }), Limits{DevSectors: 4}, "unknown flags"},
		"mark size":   {bad(func(b []byte) []byte { le.PutUint64(b[512*6+24:], 600); return b }), Limits{DevSectors: 4}, "mark of 600 bytes"},
		"inline":      {bad(func(b []byte) []byte { le.PutUint64(b[512+24:], 8); return b }), Limits{DevSectors: 4}, "inline data"},
		"data cut":    {good.bytes(8)[:512*4], Limits{DevSectors: 4}, "entry 1 of 8: data: unexpected EOF"},
		"no limits":   {good.bytes(8), Limits{}, "DevSectors is required"},
	}
	for name, c := range cases {
		_, _, err := Scan(bytes.NewReader(c.raw), c.lim)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestSegmentsSplitAcrossRanges(t *testing.T) {
	f := make(memDev, 64)
	s := Segments{{Len: 4, W: f, Off: 10}, {Len: 8, W: f, Off: 40}}
	if _, err := s.WriteAt([]byte("abcdefgh"), 2); err != nil {
		t.Fatal(err)
	}
	if string(f[12:14]) != "ab" || string(f[40:46]) != "cdefgh" {
		t.Errorf("file %q", f)
	}
	if _, err := s.WriteAt([]byte("xyz"), 10); err == nil {
		t.Error("a write past the end succeeded")
	}
}

// FuzzReplay feeds arbitrary logs to Scan and Replay: no panic, no write
// outside the device, no allocation beyond the limits.
func FuzzReplay(f *testing.F) {
	f.Add(sample().bytes(8), uint8(7), uint64(1))
	f.Add(sample().bytes(3), uint8(2), uint64(2))
	f.Add([]byte("not a log"), uint8(0), uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, upto uint8, seed uint64) {
		lim := Limits{DevSectors: 16, MaxEntries: 1 << 10, MaxWrite: 8 << 10}
		_, ents, err := Scan(bytes.NewReader(raw), lim)
		if err != nil && len(ents) == 0 {
			return
		}
		dev := make(memDev, 16*4096)
		if _, err := Replay(bytes.NewReader(raw), lim, dev, Upto(uint64(upto))); err != nil && !strings.Contains(err.Error(), "dm-log-writes log") {
			t.Fatalf("replay: %v", err)
		}
		if fl := Flushes(ents); len(fl) > 0 {
			p, _, _ := Unflushed(ents, fl[int(seed%uint64(len(fl)))], seed)
			Replay(bytes.NewReader(raw), lim, dev, p)
		}
	})
}

var _ io.WriterAt = memDev(nil)

// TestReplayEachSeesTheDeviceAtEveryFlush: one pass, the device as it is
// right after each flush entry.
func TestReplayEachSeesTheDeviceAtEveryFlush(t *testing.T) {
	raw := sample().bytes(8)
	dev := make(memDev, 4*512)
	var seen []string
	_, err := ReplayEach(bytes.NewReader(raw), Limits{DevSectors: 4}, dev, Upto(7), func(e Entry) error {
		if e.IsFlush() {
			seen = append(seen, firstBytes(dev))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, " ") != "ab.. ebcd" {
		t.Errorf("device at the flushes: %q, want [ab.. ebcd]", seen)
	}
}

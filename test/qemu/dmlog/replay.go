package dmlog

import (
	"fmt"
	"io"
	"math/rand/v2"
)

// Scan reads the whole log and returns its super block and entries
// (without data), for choosing what to replay.
func Scan(r io.Reader, lim Limits) (Super, []Entry, error) {
	lr, err := NewReader(r, lim)
	if err != nil {
		return Super{}, nil, err
	}
	var out []Entry
	for {
		e, err := lr.Next()
		if err == io.EOF {
			return lr.Super(), out, nil
		}
		if err != nil {
			return lr.Super(), out, err
		}
		out = append(out, e)
	}
}

// Flushes returns the positions in entries of the flush entries.
func Flushes(entries []Entry) []int {
	var out []int
	for i, e := range entries {
		if e.IsFlush() {
			out = append(out, i)
		}
	}
	return out
}

// Plan says which entries a replay writes.
type Plan struct {
	// Upto: every entry with Index <= Upto is written (-1: none).
	Upto int64
	// Extra entries after Upto that are written too (the writes since the
	// last flush that reached the disk, in log order).
	Extra map[uint64]bool
}

// Upto is the plan of a cut right after entry idx: the disk holds every
// write logged up to it and nothing after.
func Upto(idx uint64) Plan { return Plan{Upto: int64(idx)} }

// Unflushed is the plan of a cut between the flush at entries[flush] and
// the next flush: everything up to that flush, then a seeded choice of the
// writes logged after it. A cut moment is drawn in the window; before it,
// FUA writes (complete means durable) are kept and every other write or
// discard is kept with probability 1/2 (a volatile write cache may have
// written any subset, in any order); after it nothing is kept. It also
// returns how many window entries it kept and how many the window has.
func Unflushed(entries []Entry, flush int, seed uint64) (Plan, int, int) {
	p := Plan{Upto: int64(entries[flush].Index), Extra: map[uint64]bool{}}
	end := len(entries)
	for i := flush + 1; i < len(entries); i++ {
		if entries[i].IsFlush() {
			end = i
			if entries[i].Sectors > 0 {
				end++ // a write with a preflush: its data is a candidate
			}
			break
		}
	}
	window := end - (flush + 1)
	if window <= 0 {
		return p, 0, 0
	}
	rnd := rand.New(rand.NewPCG(seed, uint64(flush)))
	cut := flush + 1 + rnd.IntN(window+1)
	for i := flush + 1; i < cut; i++ {
		e := entries[i]
		if e.Flags&Mark != 0 {
			continue
		}
		if e.Flags&FUA != 0 || rnd.IntN(2) == 1 {
			p.Extra[e.Index] = true
		}
	}
	return p, len(p.Extra), window
}

func (p Plan) wants(idx uint64) bool {
	return int64(idx) <= p.Upto || p.Extra[idx]
}

// Stats counts what a replay wrote.
type Stats struct {
	Writes, Discards int
	Bytes            int64
}

// Replay reads the log in r and writes the entries p selects to dev, in
// log order, at Sector*SectorSize. A discard is written as zeros (the
// device may return anything for discarded sectors; zeros is one choice).
// It stops after the last entry p can select.
func Replay(r io.Reader, lim Limits, dev io.WriterAt, p Plan) (Stats, error) {
	return ReplayEach(r, lim, dev, p, nil)
}

// ReplayEach is Replay calling after (when set) once each selected entry
// is on dev, so that one pass over the log can check the device at every
// flush; an error from after stops the replay.
func ReplayEach(r io.Reader, lim Limits, dev io.WriterAt, p Plan, after func(Entry) error) (Stats, error) {
	var st Stats
	lr, err := NewReader(r, lim)
	if err != nil {
		return st, err
	}
	last := p.Upto
	for i := range p.Extra {
		last = max(last, int64(i))
	}
	ss := int64(lr.Super().SectorSize)
	var buf []byte
	for {
		e, err := lr.Next()
		if err == io.EOF || err == nil && int64(e.Index) > last {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if !p.wants(e.Index) {
			continue
		}
		if buf, err = apply(lr, e, dev, ss, buf, &st); err != nil {
			return st, err
		}
		if after != nil {
			if err := after(e); err != nil {
				return st, err
			}
		}
	}
}

// apply writes one entry's data (or a discard's zeros) to dev.
func apply(lr *Reader, e Entry, dev io.WriterAt, ss int64, buf []byte, st *Stats) ([]byte, error) {
	if e.Sectors == 0 || e.Flags&Mark != 0 {
		return buf, nil
	}
	off, n := int64(e.Sector)*ss, int64(e.Sectors)*ss
	if e.Flags&Discard != 0 {
		if err := writeZeros(dev, off, n); err != nil {
			return buf, fmt.Errorf("replay entry %d: discard: %w", e.Index, err)
		}
		st.Discards++
		return buf, nil
	}
	buf, err := lr.Data(buf)
	if err != nil {
		return buf, err
	}
	if _, err := dev.WriteAt(buf, off); err != nil {
		return buf, fmt.Errorf("replay entry %d: write of %d bytes at %d: %w", e.Index, n, off, err)
	}
	st.Writes++
	st.Bytes += n
	return buf, nil
}

// writeZeros writes n zero bytes at off in 1 MiB pieces.
func writeZeros(dev io.WriterAt, off, n int64) error {
	z := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(z)))
		if _, err := dev.WriteAt(z[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// Segment maps a range of the logged device to a range of a file.
type Segment struct {
	Len int64       // bytes of the logged device
	W   io.WriterAt // where they live
	Off int64       // at this offset of W
}

// Segments is an io.WriterAt for a logged device made of concatenated
// ranges (the test guest logs a linear concatenation of the OEM and ROOT
// partitions of one disk image).
type Segments []Segment

// WriteAt writes p at the device offset off, split across segments.
func (s Segments) WriteAt(p []byte, off int64) (int, error) {
	done := 0
	base := int64(0)
	for _, sg := range s {
		if len(p) == 0 {
			break
		}
		if off < base+sg.Len && off >= base {
			k := min(int64(len(p)), base+sg.Len-off)
			n, err := sg.W.WriteAt(p[:k], sg.Off+off-base)
			done += n
			if err != nil {
				return done, err
			}
			p, off = p[k:], off+k
		}
		base += sg.Len
	}
	if len(p) > 0 {
		return done, fmt.Errorf("write of %d bytes at %d: past the end of the %d-byte device", len(p), off, base)
	}
	return done, nil
}

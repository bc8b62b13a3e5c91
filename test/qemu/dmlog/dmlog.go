// Package dmlog reads the log that Linux's dm-log-writes target writes
// (drivers/md/dm-log-writes.c) and replays it onto a copy of the original
// device. The power-cut tests of disk model (b) (docs/powercut.md) record
// the update boot's writes with it in the guest and replay them on the
// host up to each flush.
//
// Log layout, all little endian, in units of the logged device's logical
// sector size S (the super block says which):
//
//	sector 0:   super  {magic u64, version u64, nr_entries u64, sectorsize u32}
//	then per entry: one sector {sector u64, nr_sectors u64, flags u64, data_len u64}
//	            (a mark's text follows the header inside that sector),
//	            then nr_sectors sectors of data (none for a discard).
//
// The target logs a write only once a flush covers it (or it was FUA): the
// writes before a FLUSH entry are the ones the device completed before the
// flush was issued, so the state after the Nth FLUSH entry is what the disk
// is guaranteed to hold once that flush returned.
//
// The log comes from a guest and is read as hostile input: every count and
// size is checked against Limits before anything is allocated or looped on.
package dmlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Flags of an entry (LOG_*_FLAG in the kernel).
type Flags uint64

// The entry flags the kernel writes.
const (
	Flush    Flags = 1 << 0
	FUA      Flags = 1 << 1
	Discard  Flags = 1 << 2
	Mark     Flags = 1 << 3
	Metadata Flags = 1 << 4
	known          = Flush | FUA | Discard | Mark | Metadata
)

func (f Flags) String() string {
	s := ""
	for _, n := range []struct {
		f Flags
		s string
	}{{Flush, "FLUSH"}, {FUA, "FUA"}, {Discard, "DISCARD"}, {Mark, "MARK"}, {Metadata, "META"}} {
		if f&n.f != 0 {
			if s != "" {
				s += "|"
			}
			s += n.s
		}
	}
	if s == "" {
		return "WRITE"
	}
	return s
}

// Magic and Version of the super block (WRITE_LOG_MAGIC, WRITE_LOG_VERSION).
const (
	Magic   = 0x6a736677736872
	Version = 1
)

const (
	superLen = 8 + 8 + 8 + 4
	entryLen = 4 * 8
)

// Limits bound what a log may claim.
type Limits struct {
	// DevSectors is the logged device's size in its sectors: every write
	// must lie inside it.
	DevSectors uint64
	// MaxEntries bounds nr_entries (default 1<<22).
	MaxEntries uint64
	// MaxWrite bounds one write's data in bytes (default 64 MiB).
	MaxWrite uint64
}

func (l Limits) withDefaults() Limits {
	if l.MaxEntries == 0 {
		l.MaxEntries = 1 << 22
	}
	if l.MaxWrite == 0 {
		l.MaxWrite = 64 << 20
	}
	return l
}

// Super is the log's super block.
type Super struct {
	Entries    uint64 // entries the kernel last recorded in the super block
	SectorSize uint32 // bytes per sector, of the log and of Entry.Sector
}

// Entry is one logged write, flush, discard or mark.
type Entry struct {
	Index   uint64 // position in the log, from 0
	Sector  uint64 // first sector written (Super.SectorSize units)
	Sectors uint64 // sectors written (0 for a bare flush or a mark)
	Flags   Flags
	Mark    string // the text of a mark
}

// IsFlush reports whether e is a flush (a bare one or a write with a
// preflush).
func (e Entry) IsFlush() bool { return e.Flags&Flush != 0 }

// Reader reads a log entry by entry.
type Reader struct {
	r       io.Reader
	lim     Limits
	sup     Super
	next    uint64
	pending uint64 // data bytes of the current entry not yet read
	sector  []byte
}

// NewReader reads and checks the super block of the log in r.
func NewReader(r io.Reader, lim Limits) (*Reader, error) {
	lim = lim.withDefaults()
	if lim.DevSectors == 0 {
		return nil, errors.New("dm-log-writes log: Limits.DevSectors is required")
	}
	head := make([]byte, 512)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("dm-log-writes log: super block: %w", err)
	}
	le := binary.LittleEndian
	if m := le.Uint64(head); m != Magic {
		return nil, fmt.Errorf("dm-log-writes log: super block: magic %#x, want %#x (not a log, or never written)", m, uint64(Magic))
	}
	if v := le.Uint64(head[8:]); v != Version {
		return nil, fmt.Errorf("dm-log-writes log: super block: version %d, this reader knows %d", v, Version)
	}
	sup := Super{Entries: le.Uint64(head[16:]), SectorSize: le.Uint32(head[24:])}
	ss := sup.SectorSize
	if ss < 512 || ss > 4096 || ss&(ss-1) != 0 {
		return nil, fmt.Errorf("dm-log-writes log: super block: sector size %d, want a power of two in [512, 4096]", ss)
	}
	if sup.Entries > lim.MaxEntries {
		return nil, fmt.Errorf("dm-log-writes log: super block: %d entries, more than the limit %d", sup.Entries, lim.MaxEntries)
	}
	if _, err := io.CopyN(io.Discard, r, int64(ss)-512); err != nil {
		return nil, fmt.Errorf("dm-log-writes log: super block: %w", err)
	}
	return &Reader{r: r, lim: lim, sup: sup, sector: make([]byte, ss)}, nil
}

// Super returns the super block.
func (r *Reader) Super() Super { return r.sup }

// Next returns the next entry, or io.EOF after the super block's count.
// The entry's data, if any, is read with Data before the next call; Next
// skips it otherwise.
func (r *Reader) Next() (Entry, error) {
	if err := r.skip(); err != nil {
		return Entry{}, err
	}
	if r.next >= r.sup.Entries {
		return Entry{}, io.EOF
	}
	idx := r.next
	if _, err := io.ReadFull(r.r, r.sector); err != nil {
		return Entry{}, r.errf(idx, "header: %w", noEOF(err))
	}
	le := binary.LittleEndian
	e := Entry{Index: idx, Sector: le.Uint64(r.sector), Sectors: le.Uint64(r.sector[8:]), Flags: Flags(le.Uint64(r.sector[16:]))}
	dataLen := le.Uint64(r.sector[24:])
	if err := r.check(e, dataLen); err != nil {
		return Entry{}, err
	}
	if e.Flags&Mark != 0 {
		e.Mark = string(r.sector[entryLen : entryLen+dataLen])
	} else if e.Flags&Discard == 0 {
		r.pending = e.Sectors * uint64(r.sup.SectorSize)
	}
	r.next++
	return e, nil
}

// check applies the rules an entry header must follow.
func (r *Reader) check(e Entry, dataLen uint64) error {
	ss := uint64(r.sup.SectorSize)
	switch {
	case e.Flags&^known != 0:
		return r.errf(e.Index, "unknown flags %#x", uint64(e.Flags&^known))
	case e.Flags&Mark != 0:
		if dataLen > ss-entryLen-1 {
			return r.errf(e.Index, "mark of %d bytes, more than the %d a sector holds", dataLen, ss-entryLen-1)
		}
		if e.Flags != Mark || e.Sectors != 0 {
			return r.errf(e.Index, "mark with flags %v and %d sectors, want a bare mark", e.Flags, e.Sectors)
		}
		return nil
	case dataLen != 0:
		// Inline data only comes from DAX writes, which the tests do not
		// record; it has a different layout.
		return r.errf(e.Index, "write with %d bytes of inline data (DAX), not supported", dataLen)
	case e.Sectors > r.lim.MaxWrite/ss:
		return r.errf(e.Index, "write of %d sectors, more than the limit of %d bytes", e.Sectors, r.lim.MaxWrite)
	case e.Sectors > r.lim.DevSectors || e.Sector > r.lim.DevSectors-e.Sectors:
		return r.errf(e.Index, "write of sectors [%d, +%d) outside the %d-sector device", e.Sector, e.Sectors, r.lim.DevSectors)
	case e.Sectors == 0 && e.Flags&Flush == 0:
		return r.errf(e.Index, "empty entry with flags %v (neither flush nor mark)", e.Flags)
	}
	return nil
}

// Data reads the current entry's data into buf (grown as needed, up to
// Limits.MaxWrite) and returns it: Sectors*SectorSize bytes.
func (r *Reader) Data(buf []byte) ([]byte, error) {
	n := r.pending
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r.r, buf); err != nil {
		return nil, r.errf(r.next-1, "data: %w", noEOF(err))
	}
	r.pending = 0
	return buf, nil
}

// skip discards the current entry's unread data.
func (r *Reader) skip() error {
	if r.pending == 0 {
		return nil
	}
	n := r.pending
	r.pending = 0
	if _, err := io.CopyN(io.Discard, r.r, int64(n)); err != nil {
		return r.errf(r.next-1, "data: %w", noEOF(err))
	}
	return nil
}

func (r *Reader) errf(idx uint64, format string, a ...any) error {
	return fmt.Errorf("dm-log-writes log: entry %d of %d: "+format, append([]any{idx, r.sup.Entries}, a...)...)
}

// noEOF turns a clean EOF inside a structure into ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

package image

import (
	"bytes"
	"encoding/binary"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// fakeDM is an in-memory device-mapper behind the dmIoctler interface: it
// decodes requests the way the kernel does, keeps devices and tables, and
// can fail any request type, so the set-up's error paths run on a host
// without device-mapper.
type fakeDM struct {
	mu      sync.Mutex
	devs    map[string]*fakeDev
	next    uint32
	fail    map[uint]error // request -> error to return
	sigErr  error          // DM_TABLE_LOAD with root_hash_sig_key_desc fails with this
	calls   []string
	closed  int
	removed []string
}

type fakeDev struct {
	uuid             string
	minor            uint32
	table, inactive  *dmTarget
	deferred, active bool
	open             int32
}

func newFakeDM() *fakeDM {
	return &fakeDM{devs: map[string]*fakeDev{}, fail: map[uint]error{}, next: 0}
}

var dmReqNames = map[uint]string{
	unix.DM_DEV_CREATE: "create", unix.DM_TABLE_LOAD: "load", unix.DM_DEV_SUSPEND: "resume",
	unix.DM_DEV_REMOVE: "remove", unix.DM_TARGET_MSG: "msg", unix.DM_DEV_STATUS: "info",
	unix.DM_TABLE_STATUS: "table", unix.DM_LIST_DEVICES: "list",
}

func (f *fakeDM) Close() error { f.mu.Lock(); f.closed++; f.mu.Unlock(); return nil }

func (f *fakeDM) ioctl(req uint, buf []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, err := decodeDM(buf)
	if err != nil {
		return unix.EINVAL
	}
	name := cstr(h.Name[:])
	f.calls = append(f.calls, dmReqNames[req]+" "+name)
	if err := f.fail[req]; err != nil {
		return err
	}
	d := f.devs[name]
	setHdr := func(h unix.DmIoctl) {
		var b bytes.Buffer
		binary.Write(&b, binary.NativeEndian, &h)
		copy(buf, b.Bytes())
	}
	switch req {
	case unix.DM_DEV_CREATE:
		if d != nil {
			return unix.EBUSY
		}
		f.next++
		f.devs[name] = &fakeDev{uuid: cstr(h.Uuid[:]), minor: f.next}
		h.Dev = uint64(unix.Mkdev(253, f.next))
		setHdr(h)
	case unix.DM_TABLE_LOAD:
		if d == nil {
			return unix.ENXIO
		}
		data := buf[h.Data_start:]
		var spec unix.DmTargetSpec
		binary.Read(bytes.NewReader(data[:dmSpecSize]), binary.NativeEndian, &spec)
		t := dmTarget{Start: spec.Sector_start, Length: spec.Length, Type: cstr(spec.Target_type[:]), Params: cstr(data[dmSpecSize:])}
		if h.Flags&unix.DM_READONLY_FLAG == 0 {
			return unix.EINVAL // verity targets are read-only
		}
		if strings.Contains(t.Params, "root_hash_sig_key_desc") && f.sigErr != nil {
			return f.sigErr
		}
		d.inactive = &t
	case unix.DM_DEV_SUSPEND:
		if d == nil {
			return unix.ENXIO
		}
		if d.inactive == nil {
			return unix.EINVAL
		}
		d.table, d.inactive, d.active = d.inactive, nil, true
	case unix.DM_DEV_REMOVE:
		if d == nil {
			return unix.ENXIO
		}
		if d.open > 0 {
			if h.Flags&unix.DM_DEFERRED_REMOVE != 0 {
				d.deferred = true
				return nil
			}
			return unix.EBUSY
		}
		delete(f.devs, name)
		f.removed = append(f.removed, name)
	case unix.DM_TARGET_MSG:
		if d == nil {
			return unix.ENXIO
		}
		if strings.Contains(cstr(buf[h.Data_start+8:]), "@cancel_deferred_remove") {
			d.deferred = false
		}
	case unix.DM_DEV_STATUS:
		if d == nil {
			return unix.ENXIO
		}
		copy(h.Uuid[:], d.uuid)
		h.Dev = uint64(unix.Mkdev(253, d.minor))
		h.Open_count = d.open
		h.Target_count = 0
		if d.table != nil {
			h.Target_count = 1
		}
		setHdr(h)
	case unix.DM_TABLE_STATUS:
		if d == nil {
			return unix.ENXIO
		}
		out := buf[h.Data_start:]
		h.Target_count = 0
		if d.table != nil {
			t := *d.table
			if h.Flags&unix.DM_STATUS_TABLE_FLAG == 0 {
				t.Params = "V"
			}
			p, _ := encodeTarget(t)
			// answers: next is the offset from the data start
			binary.NativeEndian.PutUint32(p[20:], uint32(len(p)))
			copy(out, p)
			h.Target_count = 1
			h.Data_size = h.Data_start + uint32(len(p))
		}
		setHdr(h)
	case unix.DM_LIST_DEVICES:
		out := buf[h.Data_start:]
		off := 0
		var last int = -1
		for n, dv := range f.devs {
			binary.NativeEndian.PutUint64(out[off:], uint64(unix.Mkdev(253, dv.minor)))
			copy(out[off+12:], n+"\x00")
			if last >= 0 {
				binary.NativeEndian.PutUint32(out[last+8:], uint32(off-last))
			}
			last = off
			off += (12 + len(n) + 1 + 7) &^ 7
		}
		h.Data_size = h.Data_start + uint32(max(off, 16))
		setHdr(h)
	default:
		return unix.ENOTTY
	}
	return nil
}

package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The device-mapper control interface, spoken directly through ioctls on
// /dev/mapper/control (linux/dm-ioctl.h; golang.org/x/sys/unix carries the
// structures): no libdevmapper, no libcryptsetup, no cgo. Every request is a
// struct dm_ioctl (312 bytes) followed by its payload; the kernel writes its
// answer into the same buffer.

// dmControlPath is the control node; dm_mod's misc device, created by
// devtmpfs when the module is loaded.
var dmControlPath = "/dev/mapper/control"

// dmIoctler issues one device-mapper ioctl; the real one talks to the
// control node, tests substitute a fake that records and fails requests.
type dmIoctler interface {
	ioctl(req uint, buf []byte) error
	Close() error
}

type dmFile struct{ f *os.File }

func (d dmFile) ioctl(req uint, buf []byte) error { return ioctlBuf(int(d.f.Fd()), req, buf) }
func (d dmFile) Close() error                     { return d.f.Close() }

// DM is an open device-mapper control interface.
type DM struct {
	c dmIoctler
}

// OpenDM opens /dev/mapper/control. When it is missing it loads dm_mod
// and dm_verity first (see dm_modules.go) and logs that through logf.
func OpenDM(logf func(string, ...any)) (*DM, error) {
	if err := ensureDMModules(logf); err != nil {
		return nil, err
	}
	f, err := openDev(dmControlPath, unix.O_RDWR)
	if err != nil {
		return nil, fmt.Errorf("cannot initialize device-mapper: %w", err)
	}
	return &DM{c: dmFile{f}}, nil
}

// Close closes the control node.
func (d *DM) Close() error { return d.c.Close() }

// dmTarget is one line of a device-mapper table.
type dmTarget struct {
	Start, Length uint64 // in 512-byte sectors
	Type          string
	Params        string
}

// dmInfo is what DM_DEV_STATUS reports about a device.
type dmInfo struct {
	Name      string
	UUID      string
	Dev       uint64 // huge_encode_dev: unix.Major/Minor decode it
	OpenCount int32
	Flags     uint32
	Targets   uint32
}

const (
	dmHeaderSize = unix.SizeofDmIoctl
	dmSpecSize   = unix.SizeofDmTargetSpec
	// dmOutSize is the result buffer of requests that return data; a
	// DM_BUFFER_FULL_FLAG answer doubles it up to dmMaxOut.
	dmOutSize = 16 << 10
	dmMaxOut  = 1 << 20
)

// encodeDM builds a request buffer: header, then payload, the whole
// buffer size bytes (at least header + payload).
func encodeDM(name, uuid string, flags, targets uint32, payload []byte, size int) ([]byte, error) {
	if len(name) >= unix.DM_NAME_LEN {
		return nil, fmt.Errorf("device-mapper name %q longer than %d bytes", name, unix.DM_NAME_LEN-1)
	}
	if len(uuid) >= unix.DM_UUID_LEN {
		return nil, fmt.Errorf("device-mapper uuid %q longer than %d bytes", uuid, unix.DM_UUID_LEN-1)
	}
	need := dmHeaderSize + len(payload)
	if size < need {
		size = need
	}
	size = (size + 7) &^ 7
	h := unix.DmIoctl{
		Version:      [3]uint32{unix.DM_VERSION_MAJOR, 0, 0},
		Data_size:    uint32(size),
		Data_start:   dmHeaderSize,
		Target_count: targets,
		Flags:        flags,
	}
	copy(h.Name[:], name)
	copy(h.Uuid[:], uuid)
	var b bytes.Buffer
	b.Grow(size)
	if err := binary.Write(&b, binary.NativeEndian, &h); err != nil {
		return nil, err
	}
	b.Write(payload)
	buf := b.Bytes()
	return append(buf, make([]byte, size-len(buf))...), nil
}

// decodeDM reads the header back from an answered request.
func decodeDM(buf []byte) (unix.DmIoctl, error) {
	var h unix.DmIoctl
	err := binary.Read(bytes.NewReader(buf[:dmHeaderSize]), binary.NativeEndian, &h)
	return h, err
}

// cstr returns the NUL-terminated string at the start of b.
func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// call sends one request and returns the answered buffer, growing the
// buffer while the kernel says it was too small.
func (d *DM) call(op string, req uint, name, uuid string, flags, targets uint32, payload []byte, out bool) ([]byte, unix.DmIoctl, error) {
	size := 0
	if out {
		size = dmOutSize
	}
	for {
		buf, err := encodeDM(name, uuid, flags, targets, payload, size)
		if err != nil {
			return nil, unix.DmIoctl{}, &DMError{Op: op, Device: name, Err: err}
		}
		if err := d.c.ioctl(req, buf); err != nil {
			return nil, unix.DmIoctl{}, &DMError{Op: op, Device: name, Err: err}
		}
		h, err := decodeDM(buf)
		if err != nil {
			return nil, h, &DMError{Op: op, Device: name, Err: err}
		}
		if out && h.Flags&unix.DM_BUFFER_FULL_FLAG != 0 && len(buf) < dmMaxOut {
			size = len(buf) * 2
			continue
		}
		return buf, h, nil
	}
}

// Create creates an empty device (no table yet) and returns its dev_t.
func (d *DM) Create(name, uuid string) (uint64, error) {
	_, h, err := d.call("DM_DEV_CREATE", unix.DM_DEV_CREATE, name, uuid, 0, 0, nil, false)
	if err != nil {
		return 0, err
	}
	return h.Dev, nil
}

// LoadTable loads t as the inactive table of name (read-only when ro);
// Resume makes it live. The target's constructor runs here, so a verity
// root hash signature is checked by the kernel during this call.
func (d *DM) LoadTable(name string, t dmTarget, ro bool) error {
	payload, err := encodeTarget(t)
	if err != nil {
		return &DMError{Op: "DM_TABLE_LOAD", Device: name, Err: err}
	}
	var flags uint32
	if ro {
		flags |= unix.DM_READONLY_FLAG
	}
	_, _, err = d.call("DM_TABLE_LOAD", unix.DM_TABLE_LOAD, name, "", flags, 1, payload, false)
	if err != nil {
		var e *DMError
		if errors.As(err, &e) {
			e.Detail = t.Type + " " + redactSigKey(t.Params)
		}
	}
	return err
}

// redactSigKey keeps table text in errors short: it is all public data,
// but the key description is noise.
func redactSigKey(params string) string {
	if i := strings.Index(params, " root_hash_sig_key_desc "); i >= 0 {
		return params[:i] + " root_hash_sig_key_desc ..."
	}
	return params
}

// encodeTarget lays out one struct dm_target_spec and its parameter
// string (NUL-terminated, padded to 8 bytes; next is the distance to the
// following spec).
func encodeTarget(t dmTarget) ([]byte, error) {
	if len(t.Type) >= unix.DM_MAX_TYPE_NAME {
		return nil, fmt.Errorf("target type %q too long", t.Type)
	}
	plen := (len(t.Params) + 1 + 7) &^ 7
	spec := unix.DmTargetSpec{Sector_start: t.Start, Length: t.Length, Next: uint32(dmSpecSize + plen)}
	copy(spec.Target_type[:], t.Type)
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, &spec); err != nil {
		return nil, err
	}
	b.WriteString(t.Params)
	b.Write(make([]byte, plen-len(t.Params)))
	return b.Bytes(), nil
}

// Resume activates the loaded table (DM_DEV_SUSPEND without
// DM_SUSPEND_FLAG).
func (d *DM) Resume(name string) error {
	_, _, err := d.call("DM_DEV_SUSPEND(resume)", unix.DM_DEV_SUSPEND, name, "", 0, 0, nil, false)
	return err
}

// Remove removes the device. With deferred, a device still open (a mount
// on it) is removed by the kernel when its last user closes it, and
// Remove returns at once; that is how systemd releases the verity
// devices of its extension images.
func (d *DM) Remove(name string, deferred bool) error {
	var flags uint32
	op := "DM_DEV_REMOVE"
	if deferred {
		flags |= unix.DM_DEFERRED_REMOVE
		op += "(deferred)"
	}
	_, _, err := d.call(op, unix.DM_DEV_REMOVE, name, "", flags, 0, nil, false)
	return err
}

// CancelDeferredRemove takes a pending deferred removal back, before an
// existing device is reused (the "@cancel_deferred_remove" message).
// EBUSY or ENXIO mean the device is already going away.
func (d *DM) CancelDeferredRemove(name string) error {
	msg := "@cancel_deferred_remove"
	payload := make([]byte, (8+len(msg)+1+7)&^7) // struct dm_target_msg { __u64 sector; char message[]; }
	copy(payload[8:], msg)
	_, _, err := d.call("DM_TARGET_MSG", unix.DM_TARGET_MSG, name, "", 0, 0, payload, false)
	return err
}

// Info returns the state of a device; errors.Is(err, unix.ENXIO) when
// there is none of that name.
func (d *DM) Info(name string) (dmInfo, error) {
	_, h, err := d.call("DM_DEV_STATUS", unix.DM_DEV_STATUS, name, "", 0, 0, nil, false)
	if err != nil {
		return dmInfo{}, err
	}
	return dmInfo{Name: cstr(h.Name[:]), UUID: cstr(h.Uuid[:]), Dev: h.Dev, OpenCount: h.Open_count, Flags: h.Flags, Targets: h.Target_count}, nil
}

// Table returns the live table's targets (DM_STATUS_TABLE_FLAG) or, with
// table false, their status lines (dm-verity: "V" verified, "C" a
// corrupted block was seen).
func (d *DM) Table(name string, table bool) ([]dmTarget, error) {
	var flags uint32
	if table {
		flags |= unix.DM_STATUS_TABLE_FLAG
	}
	buf, h, err := d.call("DM_TABLE_STATUS", unix.DM_TABLE_STATUS, name, "", flags, 0, nil, true)
	if err != nil {
		return nil, err
	}
	ts, err := decodeTargets(buf, h)
	if err != nil {
		return nil, &DMError{Op: "DM_TABLE_STATUS", Device: name, Err: err}
	}
	return ts, nil
}

// decodeTargets parses the target specs of a DM_TABLE_STATUS answer. In
// answers, next is the offset from the start of the data area (unlike
// requests, where it is relative to the previous spec). Every offset is
// bounded by the buffer.
func decodeTargets(buf []byte, h unix.DmIoctl) ([]dmTarget, error) {
	start, end := int(h.Data_start), int(h.Data_size)
	if start < dmHeaderSize || end > len(buf) || start > end {
		return nil, fmt.Errorf("answer data %d..%d outside the %d-byte buffer", start, end, len(buf))
	}
	data := buf[start:end]
	var out []dmTarget
	off := 0
	for i := uint32(0); i < h.Target_count; i++ {
		if off < 0 || off+dmSpecSize > len(data) {
			return nil, fmt.Errorf("target %d at offset %d outside the answer (%d bytes)", i, off, len(data))
		}
		var spec unix.DmTargetSpec
		if err := binary.Read(bytes.NewReader(data[off:off+dmSpecSize]), binary.NativeEndian, &spec); err != nil {
			return nil, err
		}
		out = append(out, dmTarget{Start: spec.Sector_start, Length: spec.Length, Type: cstr(spec.Target_type[:]), Params: cstr(data[off+dmSpecSize:])})
		if int(spec.Next) <= off && i+1 < h.Target_count {
			return nil, fmt.Errorf("target %d: next offset %d does not advance", i, spec.Next)
		}
		off = int(spec.Next)
	}
	return out, nil
}

// List returns the names of all device-mapper devices.
func (d *DM) List() ([]string, error) {
	buf, h, err := d.call("DM_LIST_DEVICES", unix.DM_LIST_DEVICES, "", "", 0, 0, nil, true)
	if err != nil {
		return nil, err
	}
	names, err := decodeNameList(buf, h)
	if err != nil {
		return nil, &DMError{Op: "DM_LIST_DEVICES", Err: err}
	}
	return names, nil
}

// decodeNameList parses struct dm_name_list entries { __u64 dev; __u32
// next; char name[]; ... }; next is relative to the entry, 0 ends the
// list, and a first entry with dev 0 means no devices.
func decodeNameList(buf []byte, h unix.DmIoctl) ([]string, error) {
	start, end := int(h.Data_start), int(h.Data_size)
	if start < dmHeaderSize || end > len(buf) || start > end {
		return nil, fmt.Errorf("answer data %d..%d outside the %d-byte buffer", start, end, len(buf))
	}
	data := buf[start:end]
	var names []string
	off := 0
	for n := 0; ; n++ {
		if off+12 > len(data) {
			if n == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("entry %d at offset %d outside the answer (%d bytes)", n, off, len(data))
		}
		dev := binary.NativeEndian.Uint64(data[off:])
		next := binary.NativeEndian.Uint32(data[off+8:])
		if n == 0 && dev == 0 {
			return nil, nil
		}
		names = append(names, cstr(data[off+12:]))
		if next == 0 {
			return names, nil
		}
		off += int(next)
	}
}

// dmNode returns the /dev/dm-N node of dev, which devtmpfs creates when
// the device is added (udev's /dev/mapper/NAME link may come later or,
// in an initrd without udev rules for dm, never).
func dmNode(dev uint64) string {
	return filepath.Join("/dev", fmt.Sprintf("dm-%d", unix.Minor(dev)))
}

package extension

import (
	"context"
	"io"
	"sort"

	"github.com/ext-setup-root/ext-setup-root/extension/record"
)

// ImageInfo is one row of `list`.
type ImageInfo struct {
	Name string
	Type string // directory, raw, block
	Path string // host-visible path (root prefix included), as systemd shows it
	Time int64  // usec: mtime for raw images, else crtime
	// VerityHash is the image's dm-verity root hash (from its dissection
	// or sidecar, read without setting anything up): an addition to
	// systemd's columns, shown only when some image has one.
	VerityHash string
}

// List returns the images discovery finds, sorted by name.
func List(ctx context.Context, opt Options) ([]ImageInfo, error) {
	e, err := newEngine(opt)
	if err != nil {
		return nil, err
	}
	defer e.close()
	imgs, err := e.discover()
	if err != nil {
		return nil, err
	}
	out := make([]ImageInfo, 0, len(imgs))
	for _, img := range imgs {
		id, err := record.ImageIdentity(e.rfs, img, e.identityOptions())
		if err != nil {
			// The row is still listed (systemd lists what it discovers);
			// its time is unknown, and the reason is in the log.
			e.log.Warnf("%s: cannot identify %s, listing it without a time: %v", e.cls.Name, e.display(img.Path), err)
		}
		t := id.Mtime
		if t == 0 {
			t = id.Crtime
		}
		out = append(out, ImageInfo{Name: img.Name, Type: img.Type.String(), Path: e.display(img.Path), Time: int64(t), VerityHash: id.VerityHash})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WriteList prints images as systemd's table or JSON.
func WriteList(w io.Writer, imgs []ImageInfo, json string) error {
	if json == "short" || json == "pretty" {
		arr := make(record.JSONArray, 0, len(imgs))
		for _, i := range imgs {
			obj := record.JSONObject{{Key: "name", Val: record.JSONString(i.Name)}, {Key: "type", Val: record.JSONString(i.Type)}, {Key: "path", Val: record.JSONString(i.Path)}, {Key: "time", Val: record.JSONInteger(i.Time)}}
			if i.VerityHash != "" {
				obj = append(obj, record.JSONMember{Key: "verityHash", Val: record.JSONString(i.VerityHash)})
			}
			arr = append(arr, obj)
		}
		return record.WriteJSON(w, arr, json == "pretty")
	}
	verity := false
	for _, i := range imgs {
		verity = verity || i.VerityHash != ""
	}
	t := [][]string{{"NAME", "TYPE", "PATH", "TIME"}}
	if verity {
		t[0] = append(t[0], "VERITY")
	}
	for _, i := range imgs {
		row := []string{i.Name, i.Type, i.Path, formatTimestamp(i.Time)}
		if verity {
			v := "-"
			if i.VerityHash != "" {
				v = i.VerityHash
			}
			row = append(row, v)
		}
		t = append(t, row)
	}
	_, err := io.WriteString(w, formatTable(t))
	return err
}

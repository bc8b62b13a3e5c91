package abslots

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// Plan is what abslots will do, computed by MakePlan from facts and config
// alone, so that `plan` prints exactly what `links` executes.
type Plan struct {
	Version    string   `json:"version"`
	VersionKey string   `json:"version_key"`
	OEMID      string   `json:"oemid,omitempty"`
	Slot       *Slot    `json:"slot,omitempty"`
	Choices    []Choice `json:"choices"`
	Actions    []Action `json:"actions"`
	// Missing lists images that were wanted but not found: the seam for a
	// future fetcher (see Fetcher).
	Missing []Missing `json:"missing"`
	// Problems are bad inputs (each names its file); the run goes on
	// without the affected image.
	Problems []string `json:"problems"`
	// Fatal is set when an essential image is missing; Run returns it as an
	// error after applying everything else.
	Fatal string `json:"fatal,omitempty"`
	// Changed is set by Run: how many actions changed something on disk
	// (in a dry run, how many would be tried). A rerun with nothing to do
	// reports 0.
	Changed int `json:"changed"`
	// tempDirs are cleaned by Apply before the actions.
	tempDirs []string
}

// MarshalJSON writes the plan with every list as an array, [] when empty
// (never null: JSON readers iterate over them), in `plan --json` and in the
// record file alike.
func (p Plan) MarshalJSON() ([]byte, error) {
	type plain Plan // no MarshalJSON: no recursion
	q := plain(p)
	q.Choices = emptyIfNil(q.Choices)
	q.Actions = emptyIfNil(q.Actions)
	q.Missing = emptyIfNil(q.Missing)
	q.Problems = emptyIfNil(q.Problems)
	return json.Marshal(q)
}

// emptyIfNil returns s, or an empty slice for nil.
func emptyIfNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Choice is the decision for one link: which image, and why.
type Choice struct {
	Kind string `json:"kind"` // "oem" or "extension"
	Name string `json:"name"`
	Link string `json:"link"`
	// Image is the chosen in-root image path ("" for none). When the plan
	// tries to move it to a preferred store first, Image is where it ends up
	// if that works and Fallback where it stays if not.
	Image    string `json:"image,omitempty"`
	Fallback string `json:"fallback,omitempty"`
	Reason   string `json:"reason"`
	// Protection is how the chosen image is protected: "signed",
	// "verity", "unprotected" (see annotateProtection; "" when not
	// examined).
	Protection string `json:"protection,omitempty"`
}

// Action ops, in the order a plan uses them.
const (
	OpMove      = "move"       // Src -> Dst (previous OEM image off the preferred store)
	OpPlace     = "place"      // Src -> first of Dsts that has room, else stay
	OpDedup     = "dedup"      // remove Path, an identical leftover copy of Dst
	OpSymlink   = "symlink"    // Path -> first existing of Targets
	OpUnlink    = "unlink"     // remove the symlink Path
	OpDelete    = "delete"     // remove Path recursively (migration)
	OpRelink    = "relink"     // re-point the symlink Path to Target (migration)
	OpClearFlag = "clear-flag" // remove the flag file Path
)

// Action is one idempotent step of Apply.
type Action struct {
	Op      string   `json:"op"`
	Path    string   `json:"path,omitempty"`
	Src     string   `json:"src,omitempty"`
	Dst     string   `json:"dst,omitempty"`
	Dsts    []string `json:"dsts,omitempty"`
	Target  string   `json:"target,omitempty"`
	Targets []string `json:"targets,omitempty"`
	Reason  string   `json:"reason"`
}

// Missing is a wanted image that no store holds.
type Missing struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	File string `json:"file"`
	Dir  string `json:"dir"` // where a fetcher should put it
	// Link is the active link's in-root path; its base name without
	// ".raw" is the name the image is merged under (and published as).
	Link string `json:"link"`
	// Version is the version the image must carry.
	Version   string `json:"version"`
	Essential bool   `json:"essential,omitempty"`
}

// DevNull is the link target users set to disable an extension.
const DevNull = "/dev/null"

// MakePlan computes the plan. It is a pure function of its inputs.
func MakePlan(cfg *Config, f *Facts) *Plan {
	p := &Plan{Version: f.Version, VersionKey: cfg.VersionKey, OEMID: f.OEMID, Slot: f.Slot, tempDirs: f.TempDirs}
	p.Problems = append(p.Problems, f.Problems...)
	if f.Version == "" {
		p.problem(fmt.Sprintf("%s: no %s: versioned images cannot be selected", cfg.OSRelease, cfg.VersionKey))
	}
	if cfg.OEM.Enabled && !f.OEMUnreadable {
		planOEM(p, cfg, f)
	}
	if cfg.Extensions.Enabled && !f.ExtensionsUnreadable {
		planExtensions(p, cfg, f)
	}
	return p
}

func (p *Plan) problem(s string) { p.Problems = append(p.Problems, s) }
func (p *Plan) add(a Action)     { p.Actions = append(p.Actions, a) }

// firstStore returns the index of the first store holding file, or -1.
func firstStore(f *Facts, stores []string, file string) int {
	for i, s := range stores {
		if f.exists(path.Join(s, file)) {
			return i
		}
	}
	return -1
}

// inDir reports whether in-root path p lies directly in dir.
func inDir(p, dir string) bool { return p != "" && path.Dir(p) == dir }

func planOEM(p *Plan, cfg *Config, f *Facts) {
	o := cfg.OEM
	if f.OEMID == "" {
		p.Choices = append(p.Choices, Choice{Kind: "oem", Reason: o.ReleaseFile + " has no valid " + o.IDKey + "=: OEM link untouched"})
		return
	}
	vars := map[string]string{"OEMID": f.OEMID, "VERSION": f.Version}
	link := path.Join(cfg.LinkDir, expand(o.Link, vars))
	c := Choice{Kind: "oem", Name: f.OEMID, Link: link}
	lf, haveLink := f.Links[link]
	userDisabled := haveLink && lf.Symlink && lf.Target == DevNull
	notLink := haveLink && !lf.Symlink
	active := path.Join(o.FlagDir, expand(o.ActiveFlag, vars))
	last := len(o.Stores) - 1

	var initial string
	if o.InitialImage != "" {
		file := expand(o.InitialImage, vars)
		if k := firstStore(f, o.Stores, file); k >= 0 {
			initial = path.Join(o.Stores[k], file)
		}
	}

	switch {
	case userDisabled:
		c.Reason = "link points to /dev/null (disabled by the user): untouched"
	case notLink:
		c.Reason = "not a symlink (placed by the user): untouched"
		p.problem(link + ": exists and is not a symlink; left as is")
	case !f.ActiveFlag && initial != "":
		c.Image = initial
		c.Reason = "no " + active + ": using the initial image"
	case !f.ActiveFlag:
		c.Reason = "no " + active + ": OEM link untouched"
	case f.Version != "" && firstStore(f, o.Stores, expand(o.Image, vars)) >= 0:
		file := expand(o.Image, vars)
		k := firstStore(f, o.Stores, file)
		found := path.Join(o.Stores[k], file)
		// A leftover copy in a later store is what a crash between
		// rename and unlink of a move leaves; drop it so each image
		// exists once (Apply checks that sizes match first).
		for j := k + 1; j < len(o.Stores); j++ {
			if dup := path.Join(o.Stores[j], file); f.exists(dup) {
				p.add(Action{Op: OpDedup, Path: dup, Dst: found, Reason: "leftover copy of " + found})
			}
		}
		if k == 0 {
			c.Image = found
			c.Reason = fmt.Sprintf("%s present and image for %s %s found in the preferred store", active, cfg.VersionKey, f.Version)
			break
		}
		// The previous slot's image sits in a preferred store: move it
		// to the fallback store to make room (Flatcar's case b).
		if haveLink && lf.Resolved != "" && lf.Resolved != found && f.exists(lf.Resolved) {
			for j := 0; j < last; j++ {
				if inDir(lf.Resolved, o.Stores[j]) {
					p.add(Action{Op: OpMove, Src: lf.Resolved, Dst: path.Join(o.Stores[last], path.Base(lf.Resolved)),
						Reason: "previously active image moves off " + o.Stores[j] + " to make room"})
					break
				}
			}
		}
		var dsts []string
		for j := 0; j < k; j++ {
			dsts = append(dsts, path.Join(o.Stores[j], file))
		}
		p.add(Action{Op: OpPlace, Src: found, Dsts: dsts, Reason: "prefer " + strings.Join(o.Stores[:k], ", ") + "; stays in " + o.Stores[k] + " if full"})
		c.Image, c.Fallback = dsts[0], found
		c.Reason = fmt.Sprintf("%s present and image for %s %s found in %s: moved to the preferred store if it has room", active, cfg.VersionKey, f.Version, o.Stores[k])
	case initial != "":
		c.Image = initial
		c.Reason = fmt.Sprintf("no image for %s %s: using the initial image", cfg.VersionKey, f.Version)
	default:
		c.Reason = fmt.Sprintf("no image for %s %q in %s", cfg.VersionKey, f.Version, strings.Join(o.Stores, ", "))
		if f.Version != "" {
			p.Missing = append(p.Missing, Missing{Kind: "oem", Name: f.OEMID, File: expand(o.Image, vars), Dir: o.Stores[last], Link: link, Version: f.Version, Essential: o.Essential})
			if o.Essential {
				p.Fatal = "essential OEM image " + expand(o.Image, vars) + " missing"
			}
		}
	}
	switch {
	case c.Image != "":
		targets := []string{c.Image}
		if c.Fallback != "" {
			targets = append(targets, c.Fallback)
		}
		if !(haveLink && c.Fallback == "" && lf.Target == c.Image) {
			p.add(Action{Op: OpSymlink, Path: link, Targets: targets, Reason: "activate " + f.OEMID})
		}
	case haveLink && lf.Symlink && !userDisabled && f.ActiveFlag:
		p.add(Action{Op: OpUnlink, Path: link, Reason: "stale: no image to activate"})
	}
	p.Choices = append(p.Choices, c)
	if f.ActiveFlag {
		planMigration(p, cfg, f, vars)
	}
}

// planMigration deletes the legacy OEM files once (flag present), as
// Flatcar does only together with the active flag.
func planMigration(p *Plan, cfg *Config, f *Facts, vars map[string]string) {
	o := cfg.OEM
	if !f.MigrateFlag {
		return
	}
	flag := path.Join(o.FlagDir, expand(o.MigrateFlag, vars))
	list := path.Join(o.MigrationListDir, f.OEMID)
	if f.MigrationList == nil {
		p.problem(list + ": missing; migration skipped, " + flag + " kept")
		return
	}
	for i, e := range f.MigrationList {
		if e == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", list, i+1)
		if !path.IsAbs(e) || path.Clean(e) == "/" || strings.ContainsRune(e, 0) {
			p.problem(where + ": " + fmt.Sprintf("%q", e) + " is not an absolute path below /; skipped")
			continue
		}
		e = path.Clean(e)
		if to, ok := o.MigrationRelink[e]; ok && f.Files[e].Symlink {
			p.add(Action{Op: OpRelink, Path: e, Target: to, Reason: "migration (" + where + "): keep the unit enabled from /usr"})
			continue
		}
		p.add(Action{Op: OpDelete, Path: e, Reason: "migration (" + where + ")"})
	}
	p.add(Action{Op: OpClearFlag, Path: flag, Reason: "migration done"})
}

func planExtensions(p *Plan, cfg *Config, f *Facts) {
	x := cfg.Extensions
	managed := map[string]bool{}
	for _, en := range f.Enabled.Names {
		vars := map[string]string{"NAME": en.Name, "VERSION": f.Version}
		link := path.Join(cfg.LinkDir, expand(x.Link, vars))
		managed[link] = true
		c := Choice{Kind: "extension", Name: en.Name, Link: link}
		lf, haveLink := f.Links[link]
		img := path.Join(x.Store, expand(x.Image, vars))
		essential := contains(x.Essential, en.Name)
		switch {
		case haveLink && lf.Symlink && lf.Target == DevNull:
			c.Reason = "link points to /dev/null (disabled by the user): untouched"
		case haveLink && !lf.Symlink:
			c.Reason = "not a symlink (placed by the user): untouched"
			p.problem(link + ": exists and is not a symlink; left as is")
		case f.Version == "":
			c.Reason = "no version known: untouched"
		case f.exists(img):
			c.Image = img
			c.Reason = "enabled in " + en.Source + ", image for " + cfg.VersionKey + " " + f.Version + " present"
			if !(haveLink && lf.Target == img) {
				p.add(Action{Op: OpSymlink, Path: link, Targets: []string{img}, Reason: "activate " + en.Name})
			}
		default:
			c.Reason = "enabled in " + en.Source + " but " + img + " is missing"
			p.Missing = append(p.Missing, Missing{Kind: "extension", Name: en.Name, File: path.Base(img), Dir: x.Store, Link: link, Version: f.Version, Essential: essential})
			if essential && p.Fatal == "" {
				p.Fatal = "essential extension image " + img + " missing"
			}
			if haveLink && lf.Symlink {
				p.add(Action{Op: OpUnlink, Path: link, Reason: "stale: " + img + " missing"})
			}
		}
		p.Choices = append(p.Choices, c)
	}
	// Links of names no longer enabled: only those pointing into the
	// managed store, so links users or other tools made stay.
	for _, l := range sortedKeys(f.Links) {
		lf := f.Links[l]
		if managed[l] || !lf.Symlink || lf.Target == DevNull {
			continue
		}
		t := lf.Target
		if !path.IsAbs(t) {
			t = path.Join(path.Dir(l), t)
		}
		if path.Dir(path.Clean(t)) != x.Store {
			continue
		}
		p.add(Action{Op: OpUnlink, Path: l, Reason: "points into " + x.Store + " but its name is not enabled"})
		p.Choices = append(p.Choices, Choice{Kind: "extension", Name: path.Base(l), Link: l, Reason: "no longer enabled: link removed"})
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

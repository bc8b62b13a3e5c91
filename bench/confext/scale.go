package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	sd "github.com/ext-setup-root/ext-setup-root/test/systemd262"
)

// scalePoint is one number of images: medians of merge and unchanged
// refresh for ours and systemd's.
type scalePoint struct {
	n                   int
	oursMerge, oursRefr cell
	sdMerge, sdRefresh  cell
}

// runScale measures merge and unchanged refresh for each count (the tools
// alternating run by run, as in mergeBench) and writes a table (out) and
// a plot (svg).
func runScale(tools []tool, e *sd.Env, counts []int, runs int, out, svg string) error {
	var pts []scalePoint
	for _, n := range counts {
		r, cleanup, err := mixedRoot(e, n)
		if err != nil {
			return err
		}
		mc, rc := mergeBench(tools, r, runs)
		cleanup()
		p := scalePoint{n: n, sdMerge: mc[0], sdRefresh: rc[0], oursMerge: mc[1], oursRefr: rc[1]}
		fmt.Fprintf(os.Stderr, "bench-scale: %d image(s): merge ours %s systemd %s; unchanged refresh ours %s systemd %s\n",
			n, p.oursMerge, p.sdMerge, p.oursRefr, p.sdRefresh)
		pts = append(pts, p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| images | merge, ext-setup-root | merge, systemd-confext 262 | unchanged refresh, ext-setup-root | unchanged refresh, systemd-confext 262 |\n|---|---|---|---|---|\n")
	for _, p := range pts {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", p.n, p.oursMerge, p.sdMerge, p.oursRefr, p.sdRefresh)
	}
	fmt.Fprintf(&b, "\nMedians of %d runs, %s, images alternating directory and squashfs, Flatcar layout, `--mutable=yes`.\n",
		runs, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Print(b.String())
	for _, w := range []struct{ path, data string }{{out, b.String()}, {svg, scaleSVG(pts, runs)}} {
		if w.path == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(w.path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(w.path, []byte(w.data), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// scaleSVG draws the four series on log-log axes (images 1..N in powers of
// two, time in decades), as plain SVG text.
func scaleSVG(pts []scalePoint, runs int) string {
	const W, H = 720, 440
	const left, right, top, bottom = 70, 210, 40, 50
	pw, ph := float64(W-left-right), float64(H-top-bottom)
	maxN := 1
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		maxN = max(maxN, p.n)
		for _, c := range []cell{p.oursMerge, p.oursRefr, p.sdMerge, p.sdRefresh} {
			if c.err == "" && c.d > 0 {
				ms := float64(c.d) / float64(time.Millisecond)
				lo, hi = math.Min(lo, ms), math.Max(hi, ms)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	xmax := math.Max(1, math.Log2(float64(maxN)))
	x := func(n int) float64 { return left + pw*math.Log2(float64(n))/xmax }
	y := func(ms float64) float64 { return top + ph*(1-(math.Log10(ms)-dlo)/(dhi-dlo)) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14" font-weight="bold">confext merge and unchanged refresh time by number of images</text>`+"\n", left)
	// Grid and ticks.
	for d := dlo; d <= dhi; d++ {
		yy := y(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, yy, left+pw, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, yy+4, msLabel(math.Pow(10, d)))
	}
	for n := 1; n <= maxN; n *= 2 {
		xx := x(n)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", xx, top, xx, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", xx, top+ph+16, n)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">number of confext images (log scale)</text>`+"\n", left+pw/2, H-10)
	fmt.Fprintf(&b, `<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">time, median of %d runs (log scale)</text>`+"\n", top+ph/2, top+ph/2, runs)
	series := []struct {
		name  string
		color string
		dash  string
		get   func(scalePoint) cell
	}{
		{"systemd-confext 262 merge", "#d62728", "", func(p scalePoint) cell { return p.sdMerge }},
		{"systemd-confext 262 refresh", "#d62728", "6,4", func(p scalePoint) cell { return p.sdRefresh }},
		{"ext-setup-root merge", "#1f77b4", "", func(p scalePoint) cell { return p.oursMerge }},
		{"ext-setup-root refresh", "#1f77b4", "6,4", func(p scalePoint) cell { return p.oursRefr }},
	}
	for i, s := range series {
		var pts2 []string
		for _, p := range pts {
			c := s.get(p)
			if c.err != "" || c.d <= 0 {
				continue
			}
			ms := float64(c.d) / float64(time.Millisecond)
			pts2 = append(pts2, fmt.Sprintf("%.1f,%.1f", x(p.n), y(ms)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s, %d image(s): %s</title></circle>`+"\n", x(p.n), y(ms), s.color, s.name, p.n, fmtDur(c.d))
		}
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts2, " "), s.color, dash)
		ly := float64(top + 20 + 22*i)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", left+pw+14, ly, left+pw+44, ly, s.color, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+50, ly+4, s.name)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func msLabel(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%g s", ms/1000)
	case ms >= 1:
		return fmt.Sprintf("%g ms", ms)
	default:
		return fmt.Sprintf("%g µs", ms*1000)
	}
}

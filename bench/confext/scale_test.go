package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

// TestScaleSVG checks that the plot is well-formed XML with one polyline
// per series and a point per measured cell (a failed cell is left out).
func TestScaleSVG(t *testing.T) {
	ms := func(f float64) cell { return cell{d: time.Duration(f * float64(time.Millisecond))} }
	pts := []scalePoint{
		{n: 1, oursMerge: ms(3), oursRefr: ms(2.5), sdMerge: ms(6), sdRefresh: ms(5)},
		{n: 8, oursMerge: ms(8), oursRefr: ms(4), sdMerge: ms(360), sdRefresh: cell{err: "failed"}},
		{n: 128, oursMerge: ms(50), oursRefr: ms(12), sdMerge: ms(5800), sdRefresh: ms(5700)},
	}
	s := scaleSVG(pts, 3)
	d := xml.NewDecoder(strings.NewReader(s))
	counts := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, s)
		}
		if se, ok := tok.(xml.StartElement); ok {
			counts[se.Name.Local]++
		}
	}
	if counts["polyline"] != 4 || counts["circle"] != 11 {
		t.Errorf("polylines %d (want 4), points %d (want 11)", counts["polyline"], counts["circle"])
	}
	for _, want := range []string{"1 s", "1 ms", ">128<", "systemd-confext 262 refresh"} {
		if !strings.Contains(s, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}

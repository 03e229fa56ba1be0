package ocr

import (
	"fmt"
	"image"
	"math"
)

// Layout is the OCR result of one page: text regions in reading order, each
// with its text lines in reading order.
type Layout struct {
	// ImageName is the page image's file name (PAGE XML imageFilename).
	ImageName string
	Width     int
	Height    int
	Regions   []Region
}

// Region is a block of lines read together (a paragraph, a column part, a heading).
type Region struct {
	ID     string
	Coords []image.Point // outline polygon
	Lines  []Line
}

// Line is one text line.
type Line struct {
	ID string
	// Coords is the line's outline polygon; Baseline runs along the foot of
	// the letters, left to right.
	Coords   []image.Point
	Baseline []image.Point
	// Text and Conf are the recognised text and its confidence (0..1); both
	// are zero before recognition.
	Text string
	Conf float64
	// Words are the words of Text with their boxes, when recognition placed them.
	Words []Word

	quad quad // reading geometry (page pixels): detected box, or the box fitted to Coords
}

// Word is a word of a recognised line and where it stands on the page.
type Word struct {
	Text   string
	Coords [4]image.Point // top-left, top-right, bottom-right, bottom-left
	Conf   float64
}

// Lines returns every line in reading order.
func (l *Layout) Lines() []*Line {
	var out []*Line
	for r := range l.Regions {
		for i := range l.Regions[r].Lines {
			out = append(out, &l.Regions[r].Lines[i])
		}
	}
	return out
}

// Text returns the page text: one line per text line, regions separated by
// an empty line.
func (l *Layout) Text() string {
	var b []byte
	for _, reg := range l.Regions {
		if !hasText(reg) {
			continue
		}
		if len(b) > 0 {
			b = append(b, '\n')
		}
		for _, ln := range reg.Lines {
			if ln.Text == "" {
				continue
			}
			b = append(b, ln.Text...)
			b = append(b, '\n')
		}
	}
	return string(b)
}

// buildLayout turns detected quads into a layout in reading order.
func buildLayout(name string, w, h int, quads []quad) *Layout {
	lay := &Layout{ImageName: name, Width: w, Height: h}
	for ri, group := range readingOrder(quads) {
		reg := Region{ID: fmt.Sprintf("r%d", ri+1)}
		var pts []point
		for _, i := range group {
			q := quads[i]
			reg.Lines = append(reg.Lines, Line{
				ID:       fmt.Sprintf("r%d-l%d", ri+1, len(reg.Lines)+1),
				Coords:   quadPoints(q),
				Baseline: baselineOf(q),
				quad:     q,
			})
			pts = append(pts, q[:]...)
		}
		reg.Coords = regionOutline(pts)
		lay.Regions = append(lay.Regions, reg)
	}
	return lay
}

func quadPoints(q quad) []image.Point {
	out := make([]image.Point, 4)
	for i, p := range q {
		out[i] = image.Pt(int(math.Round(p.X)), int(math.Round(p.Y)))
	}
	return out
}

// baselineOf estimates the baseline of a detected box: the detector's box
// reaches from above the ascenders to below the descenders with a margin,
// and the foot of the letters lies about 70% of the way down.
func baselineOf(q quad) []image.Point {
	a, b := lerp(q[0], q[3], 0.7), lerp(q[1], q[2], 0.7)
	return []image.Point{
		image.Pt(int(math.Round(a.X)), int(math.Round(a.Y))),
		image.Pt(int(math.Round(b.X)), int(math.Round(b.Y))),
	}
}

// regionOutline is the convex hull of the region's line corners, which
// covers the lines without crossing into a neighbouring column.
func regionOutline(pts []point) []image.Point {
	hull := convexHull(pts)
	out := make([]image.Point, 0, len(hull))
	for _, p := range hull {
		out = append(out, image.Pt(int(math.Round(p.X)), int(math.Round(p.Y))))
	}
	return out
}

// fitQuad returns the reading box of a line given as a polygon (a PAGE XML
// TextLine from another tool): its minimum-area rectangle, corners in
// reading order.
func fitQuad(poly []image.Point) (quad, bool) {
	pts := make([]point, len(poly))
	for i, p := range poly {
		pts[i] = point{float64(p.X), float64(p.Y)}
	}
	r := minAreaRect(pts)
	if r.w < 1 || r.h < 1 {
		return quad{}, false
	}
	return orderClockwise(r.corners()), true
}

package ocr

import (
	"math"
	"slices"
	"sort"
)

// Reading order. Lines are first grouped into columns and sections, then read
// top to bottom inside each: reading a multi-column page row by row across
// the gutter is what costs tesseract most on such pages.
//
// The page is deskewed first (the median direction of the long lines), so
// that a gutter on a page scanned two degrees off is still a vertical gap.
// A gutter is a vertical band that few lines cross, with enough lines on
// both sides standing side by side. Lines crossing it (headings, footers)
// cut the page into sections; each section reads its left part, then its
// right part, each part again split recursively (three columns, a table).

// box is an axis-aligned rectangle in the deskewed frame.
type box struct{ x0, y0, x1, y1 float64 }

func (b box) h() float64  { return b.y1 - b.y0 }
func (b box) cy() float64 { return (b.y0 + b.y1) / 2 }

// yOverlap is the vertical overlap of a and b relative to the lower of the two heights.
func yOverlap(a, b box) float64 {
	o := math.Min(a.y1, b.y1) - math.Max(a.y0, b.y0)
	return o / math.Max(math.Min(a.h(), b.h()), 1)
}

// readingOrder groups line quads into regions in reading order and returns,
// for each region, the indices of its lines in order.
func readingOrder(quads []quad) [][]int {
	if len(quads) == 0 {
		return nil
	}
	boxes := deskewedBoxes(quads)
	idx := make([]int, len(quads))
	for i := range idx {
		idx[i] = i
	}
	hs := make([]float64, len(boxes))
	for i, b := range boxes {
		hs[i] = b.h()
	}
	o := orderer{boxes: boxes, lineH: math.Max(median(hs), 1)}
	return o.split(idx, 0)
}

type orderer struct {
	boxes []box
	lineH float64 // median line height
}

// deskewedBoxes rotates the quads by minus the page skew (the median angle
// of the lines clearly wider than high) and returns their bounding boxes.
func deskewedBoxes(quads []quad) []box {
	var angles []float64
	for _, q := range quads {
		if q.width() > 2*q.height() {
			angles = append(angles, q.angle())
		}
	}
	skew := 0.0
	if len(angles) > 0 {
		skew = median(angles)
	}
	c, s := math.Cos(-skew), math.Sin(-skew)
	boxes := make([]box, len(quads))
	for i, q := range quads {
		b := box{math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)}
		for _, p := range q {
			p = p.rot(c, s)
			b.x0, b.x1 = math.Min(b.x0, p.X), math.Max(b.x1, p.X)
			b.y0, b.y1 = math.Min(b.y0, p.Y), math.Max(b.y1, p.Y)
		}
		boxes[i] = b
	}
	return boxes
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

const maxOrderDepth = 8

// split orders the lines idx: by gutter into columns and sections when there
// is one, else into rows.
func (o *orderer) split(idx []int, depth int) [][]int {
	if len(idx) <= 1 {
		return [][]int{idx}
	}
	gx, ok := o.findGutter(idx)
	if !ok || depth >= maxOrderDepth {
		return o.paragraphs(o.rows(idx))
	}
	var spanning, left, right []int
	for _, i := range idx {
		b := o.boxes[i]
		switch {
		case b.x1 <= gx:
			left = append(left, i)
		case b.x0 >= gx:
			right = append(right, i)
		default:
			spanning = append(spanning, i)
		}
	}
	o.sortY(spanning)
	var regions [][]int
	// Section k holds the column lines above spanning line k (and below k-1).
	var run []int // consecutive spanning lines form one region (a two-line heading)
	prevY := math.Inf(-1)
	flush := func() {
		if len(run) > 0 {
			regions = append(regions, run)
			run = nil
		}
	}
	for k := 0; k <= len(spanning); k++ {
		nextY := math.Inf(1)
		if k < len(spanning) {
			nextY = o.boxes[spanning[k]].cy()
		}
		var l, r []int
		for _, i := range left {
			if cy := o.boxes[i].cy(); cy >= prevY && cy < nextY {
				l = append(l, i)
			}
		}
		for _, i := range right {
			if cy := o.boxes[i].cy(); cy >= prevY && cy < nextY {
				r = append(r, i)
			}
		}
		if len(l)+len(r) > 0 {
			flush()
		}
		if len(l) > 0 {
			regions = append(regions, o.split(l, depth+1)...)
		}
		if len(r) > 0 {
			regions = append(regions, o.split(r, depth+1)...)
		}
		if k < len(spanning) {
			run = append(run, spanning[k])
			prevY = nextY
		}
	}
	flush()
	return regions
}

func (o *orderer) sortY(idx []int) {
	sort.SliceStable(idx, func(a, b int) bool { return o.boxes[idx[a]].cy() < o.boxes[idx[b]].cy() })
}

// findGutter looks for the widest vertical band inside the lines' extent
// that at most a quarter of them cross, with lines standing side by side
// across it. It returns the band's centre.
func (o *orderer) findGutter(idx []int) (float64, bool) {
	n := len(idx)
	if n < 4 {
		return 0, false
	}
	minX, maxX := math.Inf(1), math.Inf(-1)
	for _, i := range idx {
		minX, maxX = math.Min(minX, o.boxes[i].x0), math.Max(maxX, o.boxes[i].x1)
	}
	width := int(maxX-minX) + 1
	if width < 3 {
		return 0, false
	}
	// Coverage by a difference array: lines covering each x.
	diff := make([]int, width+1)
	for _, i := range idx {
		b := o.boxes[i]
		a, e := clampi(int(b.x0-minX), 0, width), clampi(int(b.x1-minX)+1, 0, width)
		diff[a]++
		diff[e]--
	}
	maxCross := max(2, n/4) // a heading and a footer cross any gutter
	minGap := int(math.Max(0.5*o.lineH, 4))
	minSide := 2
	if n >= 8 {
		minSide = 3
	}
	cov := make([]int, width)
	c := 0
	for x := range width {
		c += diff[x]
		cov[x] = c
	}
	// The least crossed band wins: try bands no line crosses first, then
	// those one line crosses, and so on; among equals the widest.
	for level := 0; level <= maxCross; level++ {
		bestW, bestX := 0, 0.0
		runStart := -1
		for x := 0; x <= width; x++ {
			low := x < width && cov[x] <= level
			if low && runStart < 0 {
				runStart = x
			}
			if !low && runStart >= 0 {
				w := x - runStart
				if runStart > 0 && x < width && w >= minGap && w > bestW {
					gx := minX + float64(runStart+x)/2
					if o.columnsAround(idx, gx, maxCross, minSide) {
						bestW, bestX = w, gx
					}
				}
				runStart = -1
			}
		}
		if bestW > 0 {
			return bestX, true
		}
	}
	return 0, false
}

// columnsAround reports whether gx separates columns: enough lines on each
// side, few crossing, and on the side with fewer lines at least half of them
// with a line of the other side at the same height.
func (o *orderer) columnsAround(idx []int, gx float64, maxCross, minSide int) bool {
	var left, right []int
	cross := 0
	for _, i := range idx {
		b := o.boxes[i]
		switch {
		case b.x1 <= gx:
			left = append(left, i)
		case b.x0 >= gx:
			right = append(right, i)
		default:
			cross++
		}
	}
	if cross > maxCross || len(left) < minSide || len(right) < minSide {
		return false
	}
	small, big := left, right
	if len(small) > len(big) {
		small, big = big, small
	}
	paired := 0
	for _, i := range small {
		for _, j := range big {
			if yOverlap(o.boxes[i], o.boxes[j]) > 0.3 {
				paired++
				break
			}
		}
	}
	return 2*paired >= len(small)
}

// rows orders lines top to bottom, lines at the same height left to right.
func (o *orderer) rows(idx []int) []int {
	s := slices.Clone(idx)
	o.sortY(s)
	out := make([]int, 0, len(s))
	for i := 0; i < len(s); {
		row := []int{s[i]}
		band := o.boxes[s[i]]
		j := i + 1
		for ; j < len(s); j++ {
			b := o.boxes[s[j]]
			if yOverlap(band, b) < 0.5 {
				break
			}
			row = append(row, s[j])
		}
		sort.SliceStable(row, func(a, b int) bool { return o.boxes[row[a]].x0 < o.boxes[row[b]].x0 })
		out = append(out, row...)
		i = j
	}
	return out
}

// paragraphs cuts ordered lines into regions at vertical gaps wider than
// one and a half line heights.
func (o *orderer) paragraphs(ordered []int) [][]int {
	var regions [][]int
	start := 0
	for k := 1; k < len(ordered); k++ {
		prev, cur := o.boxes[ordered[k-1]], o.boxes[ordered[k]]
		if cur.y0-prev.y1 > 1.5*o.lineH {
			regions = append(regions, ordered[start:k])
			start = k
		}
	}
	return append(regions, ordered[start:])
}

package ocr

import (
	"math"
)

// DetectConfig holds the text detection settings ([detect] in config.ini).
type DetectConfig struct {
	// Model is the DB detection model file (default ch_PP-OCRv4_det_infer.onnx).
	Model string
	// LimitSide is the side length the page is scaled to (default 800).
	LimitSide int
	// LimitType is "max" (scale the longer side down to LimitSide; default) or
	// "min" (scale the shorter side up to LimitSide).
	LimitType string
	// Threshold binarises the probability map (default 0.3).
	Threshold float64
	// BoxThreshold drops boxes whose mean probability is below it (default
	// 0.5: at 0.6 short lines such as page numbers are lost at the default
	// detection size).
	BoxThreshold float64
	// UnclipRatio grows each box by area*ratio/perimeter (default 2.0; PaddleOCR
	// uses 1.5, with which the recogniser runs words together more often).
	UnclipRatio float64
	// MaxCandidates caps the regions examined (default 1000).
	MaxCandidates int
	// MinSize drops regions whose short side is below it, in model pixels (default 3).
	MinSize float64
	// CropMargins runs the detector on the inked window of the page (see
	// inkWindow) at the page's scale instead of on the whole page (default
	// yes): blank margins and the empty part of a short page cost model time
	// and hold no lines.
	CropMargins bool
}

// detSize returns the model input size for a w x h page: multiples of 32.
func detSize(w, h int, c DetectConfig) (int, int) {
	ratio := 1.0
	switch c.LimitType {
	case "min":
		if m := min(w, h); m < c.LimitSide {
			ratio = float64(c.LimitSide) / float64(m)
		}
	default:
		if m := max(w, h); m > c.LimitSide {
			ratio = float64(c.LimitSide) / float64(m)
		}
	}
	rw := max(int(math.RoundToEven(float64(w)*ratio/32))*32, 32)
	rh := max(int(math.RoundToEven(float64(h)*ratio/32))*32, 32)
	return rw, rh
}

// Normalisation of the detection model, per channel in B, G, R order.
var (
	detMean = [3]float32{0.485, 0.456, 0.406}
	detStd  = [3]float32{0.229, 0.224, 0.225}
)

// linearTaps are the source indices and weights of a bilinear resize along
// one axis, with pixel centres aligned (OpenCV's INTER_LINEAR).
type linearTaps struct {
	i0, i1 []int
	f      []float32
}

func newLinearTaps(src, dst int) linearTaps {
	t := linearTaps{i0: make([]int, dst), i1: make([]int, dst), f: make([]float32, dst)}
	scale := float64(src) / float64(dst)
	for d := range dst {
		s := (float64(d)+0.5)*scale - 0.5
		if s < 0 {
			s = 0
		}
		i := int(s)
		if i >= src-1 {
			i, s = src-1, float64(src-1)
		}
		t.i0[d], t.i1[d], t.f[d] = i, min(i+1, src-1), float32(s-float64(i))
	}
	return t
}

// detResize resizes r to dw x dh (bilinear) into dst: r.c interleaved
// channels of 8-bit levels, as float32 (dst holds r.c*dw*dh values).
func detResize(r *raster, dw, dh int, dst []float32) {
	if 2*dh <= r.h {
		detResizeDirect(r, dw, dh, dst)
		return
	}
	detResizeRows(r, dw, dh, dst)
}

// detResizeRows is detResize resizing each source row it needs
// horizontally once, then blending pairs of them: when the page is scaled
// up or down by less than half, neighbouring output rows share source rows.
func detResizeRows(r *raster, dw, dh int, dst []float32) {
	xt, yt := newLinearTaps(r.w, dw), newLinearTaps(r.h, dh)
	n := dw * r.c
	row0 := make([]float32, n)
	row1 := make([]float32, n)
	hres := func(y int, out []float32) {
		src := r.pix[y*r.w*r.c : (y+1)*r.w*r.c]
		if r.c == 1 {
			for x := range out {
				a, b := float32(src[xt.i0[x]]), float32(src[xt.i1[x]])
				out[x] = a + (b-a)*xt.f[x]
			}
			return
		}
		for x := range dw {
			i0, i1, f := xt.i0[x]*3, xt.i1[x]*3, xt.f[x]
			for ch := range 3 {
				a, b := float32(src[i0+ch]), float32(src[i1+ch])
				out[x*3+ch] = a + (b-a)*f
			}
		}
	}
	last0, last1 := -1, -1
	for y := range dh {
		y0, y1, fy := yt.i0[y], yt.i1[y], yt.f[y]
		if y0 != last0 {
			if y0 == last1 {
				row0, row1 = row1, row0
			} else {
				hres(y0, row0)
			}
		}
		if y1 != last1 || y0 != last0 {
			if y1 == y0 {
				copy(row1, row0)
			} else {
				hres(y1, row1)
			}
		}
		last0, last1 = y0, y1
		out := dst[y*n : (y+1)*n]
		for i, a := range row0 {
			out[i] = a + (row1[i]-a)*fy
		}
	}
}

// detResizeDirect is detResize for a page scaled down to half or less,
// where no two output rows share a source row: each output value is
// worked out from its four source levels at once, with detResizeRows's
// arithmetic in the same order (the same bits), but without its row
// buffers.
func detResizeDirect(r *raster, dw, dh int, dst []float32) {
	xt, yt := newLinearTaps(r.w, dw), newLinearTaps(r.h, dh)
	type tap struct {
		i0, i1 int
		f      float32
	}
	taps := make([]tap, dw)
	for x := range taps {
		taps[x] = tap{xt.i0[x] * r.c, xt.i1[x] * r.c, xt.f[x]}
	}
	stride := r.w * r.c
	for y := range dh {
		fy := yt.f[y]
		s0 := r.pix[yt.i0[y]*stride : (yt.i0[y]+1)*stride]
		s1 := r.pix[yt.i1[y]*stride : (yt.i1[y]+1)*stride]
		if r.c == 1 {
			out := dst[y*dw : (y+1)*dw]
			for x, t := range taps {
				a0, b0 := float32(s0[t.i0]), float32(s0[t.i1])
				a1, b1 := float32(s1[t.i0]), float32(s1[t.i1])
				v0 := a0 + (b0-a0)*t.f
				v1 := a1 + (b1-a1)*t.f
				out[x] = v0 + (v1-v0)*fy
			}
			continue
		}
		out := dst[y*dw*3 : (y+1)*dw*3]
		for x, t := range taps {
			for ch := range 3 {
				a0, b0 := float32(s0[t.i0+ch]), float32(s0[t.i1+ch])
				a1, b1 := float32(s1[t.i0+ch]), float32(s1[t.i1+ch])
				v0 := a0 + (b0-a0)*t.f
				v1 := a1 + (b1-a1)*t.f
				out[x*3+ch] = v0 + (v1-v0)*fy
			}
		}
	}
}

// detPlanes writes the window [x0, x1) x [y0, y1) of the resized page src
// (dw wide, c channels) as the detector's normalised B, G, R planes into
// dst, which must hold 3*(x1-x0)*(y1-y0) values.
func detPlanes(src []float32, c, dw, x0, y0, x1, y1 int, dst []float32) {
	var scale, shift [3]float32
	for ch := range 3 {
		scale[ch] = 1 / (255 * detStd[ch])
		shift[ch] = -detMean[ch] / detStd[ch]
	}
	cw, ch := x1-x0, y1-y0
	plane := cw * ch
	for y := range ch {
		row := src[((y0+y)*dw+x0)*c : ((y0+y)*dw+x1)*c]
		off := y * cw
		b, g, r := dst[off:off+cw], dst[plane+off:plane+off+cw], dst[2*plane+off:2*plane+off+cw]
		if c == 1 {
			for x, v := range row {
				b[x] = v*scale[0] + shift[0]
				g[x] = v*scale[1] + shift[1]
				r[x] = v*scale[2] + shift[2]
			}
			continue
		}
		for x := range b { // the page is R, G, B
			b[x] = row[x*3+2]*scale[0] + shift[0]
			g[x] = row[x*3+1]*scale[1] + shift[1]
			r[x] = row[x*3]*scale[2] + shift[2]
		}
	}
}

// mapWindow places a probability map in the detector's full map: its
// top-left corner (x0, y0) and the full map's size dw x dh, which the page
// (pw x ph) was scaled to.
type mapWindow struct{ x0, y0, dw, dh int }

// dbBoxes turns the probability map (mw x mh, at win) into text boxes in
// page coordinates (pw x ph), following DB's post-processing: connected
// regions of prob > threshold, their minimum-area rectangles, the mean
// probability inside as score, and the rectangle grown ("unclipped") by
// area*ratio/perimeter on every side. The map outside the window counts
// as zero: no region or rectangle reaches it.
func dbBoxes(prob []float32, mw, mh int, win mapWindow, pw, ph int, c DetectConfig) []detBox {
	var boxes []detBox
	sx, sy := float64(pw)/float64(win.dw), float64(ph)/float64(win.dh)
	ox, oy := float64(win.x0), float64(win.y0)
	for _, reg := range mapRegions(prob, mw, mh, float32(c.Threshold), c.MaxCandidates) {
		y0, rowMin, rowMax := reg.y0, reg.rowMin, reg.rowMax
		pts := make([]point, 0, 2*len(rowMin))
		for ry := range rowMin {
			if rowMax[ry] < 0 {
				continue
			}
			y := float64(y0 + ry)
			pts = append(pts, point{float64(rowMin[ry]), y})
			if rowMax[ry] != rowMin[ry] {
				pts = append(pts, point{float64(rowMax[ry]), y})
			}
		}
		if len(pts) < 2 {
			continue
		}
		r := minAreaRect(pts)
		if math.Min(r.w, r.h) < c.MinSize {
			continue
		}
		score := boxScore(prob, mw, mh, r.corners())
		if score < c.BoxThreshold {
			continue
		}
		// Growing a rectangle's outline by d with round joins and taking the
		// minimum-area rectangle again gives the rectangle grown by d.
		d := r.w * r.h * c.UnclipRatio / (2 * (r.w + r.h))
		r.w += 2 * d
		r.h += 2 * d
		if math.Min(r.w, r.h) < c.MinSize+2 {
			continue
		}
		q := r.corners()
		for k := range q {
			q[k] = point{clamp(math.Round((q[k].X+ox)*sx), 0, float64(pw)), clamp(math.Round((q[k].Y+oy)*sy), 0, float64(ph))}
		}
		q = orderClockwise(q)
		for k := range q {
			q[k] = q[k].in(float64(pw-1), float64(ph-1))
		}
		if int(q[0].dist(q[1])) <= 3 || int(q[0].dist(q[3])) <= 3 {
			continue
		}
		boxes = append(boxes, detBox{q: q, score: score})
	}
	return boxes
}

// mapRegion is a connected region of the probability map: its first row
// and, per row from there, its leftmost and rightmost pixel (the convex
// hull of a region is the hull of those).
type mapRegion struct {
	y0             int
	rowMin, rowMax []int32
}

// mapRun is a run of map pixels above the threshold on row y, x0 to x1
// inclusive.
type mapRun struct{ y, x0, x1 int32 }

// mapRegions finds the 8-connected regions of prob > thr, at most limit
// of them, in the raster order of their first pixels. It works on runs of
// pixels: the runs of each row are joined (union-find) with the runs of
// the row above that touch them, diagonally included, so that each pixel
// is looked at once.
func mapRegions(prob []float32, mw, mh int, thr float32, limit int) []mapRegion {
	var runs []mapRun
	rowStart := make([]int, mh+1)
	for y := range mh {
		rowStart[y] = len(runs)
		row := prob[y*mw : (y+1)*mw]
		for x := 0; x < mw; x++ {
			if row[x] <= thr {
				continue
			}
			x0 := x
			for x+1 < mw && row[x+1] > thr {
				x++
			}
			runs = append(runs, mapRun{int32(y), int32(x0), int32(x)})
		}
	}
	rowStart[mh] = len(runs)
	parent := make([]int32, len(runs))
	for i := range parent {
		parent[i] = int32(i)
	}
	find := func(i int32) int32 {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	for y := 1; y < mh; y++ {
		i, j := rowStart[y-1], rowStart[y]
		for i < rowStart[y] && j < rowStart[y+1] {
			a, b := runs[i], runs[j]
			switch {
			case a.x1+1 < b.x0:
				i++
				continue
			case b.x1+1 < a.x0:
				j++
				continue
			}
			// The root with the earlier first run stays the root, so
			// that a region's root is its first run.
			ra, rb := find(int32(i)), find(int32(j))
			if ra < rb {
				parent[rb] = ra
			} else if rb < ra {
				parent[ra] = rb
			}
			if a.x1 < b.x1 {
				i++
			} else {
				j++
			}
		}
	}
	// Regions in the order of their first runs, their runs in raster order.
	id := make([]int32, len(runs))
	var counts []int
	for i := range runs {
		r := find(int32(i))
		if r == int32(i) {
			id[i] = int32(len(counts))
			counts = append(counts, 0)
		} else {
			id[i] = id[r]
		}
		counts[id[i]]++
	}
	n := min(len(counts), limit)
	regions := make([]mapRegion, n)
	for i, r := range runs {
		k := id[i]
		if int(k) >= n {
			continue
		}
		reg := &regions[k]
		if reg.rowMin == nil {
			reg.y0 = int(r.y)
			reg.rowMin = make([]int32, 0, counts[k])
			reg.rowMax = make([]int32, 0, counts[k])
		}
		ry := int(r.y) - reg.y0
		if ry == len(reg.rowMin) {
			reg.rowMin = append(reg.rowMin, r.x0)
			reg.rowMax = append(reg.rowMax, r.x1)
			continue
		}
		reg.rowMin[ry] = min(reg.rowMin[ry], r.x0)
		reg.rowMax[ry] = max(reg.rowMax[ry], r.x1)
	}
	return regions
}

// detBox is a detected line box in page coordinates.
type detBox struct {
	q     quad
	score float64
}

// boxScore is the mean probability over the pixels whose centres fall inside q.
func boxScore(prob []float32, mw, mh int, q quad) float64 {
	minX, minY, maxX, maxY := q.bounds()
	x0, x1 := clampi(int(math.Floor(minX)), 0, mw-1), clampi(int(math.Ceil(maxX)), 0, mw-1)
	y0, y1 := clampi(int(math.Floor(minY)), 0, mh-1), clampi(int(math.Ceil(maxY)), 0, mh-1)
	poly := q[:]
	var sum float64
	n := 0
	for y := y0; y <= y1; y++ {
		// The rows of a convex polygon are intervals: find this row's span.
		lo, hi, ok := convexRowSpan(poly, float64(y))
		if !ok {
			continue
		}
		a, b := clampi(int(math.Ceil(lo)), x0, x1), clampi(int(math.Floor(hi)), x0, x1)
		row := prob[y*mw:]
		for x := a; x <= b; x++ {
			sum += float64(row[x])
		}
		n += max(b-a+1, 0)
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// convexRowSpan returns the x interval where the horizontal line at y meets
// the convex polygon poly.
func convexRowSpan(poly []point, y float64) (lo, hi float64, ok bool) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i := range poly {
		a, b := poly[i], poly[(i+1)%len(poly)]
		if (a.Y > y) == (b.Y > y) {
			if a.Y == y {
				lo, hi = math.Min(lo, a.X), math.Max(hi, a.X)
			}
			continue
		}
		x := a.X + (y-a.Y)*(b.X-a.X)/(b.Y-a.Y)
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi, lo <= hi
}

// Ink window settings, in detector pixels and 8-bit levels.
const (
	inkMargin   = 96 // blank kept around the ink: the detector's context
	inkContrast = 48 // a pixel is ink when it is this much darker than the paper
	inkMinCount = 2  // a row or column needs this many ink pixels (single specks do not count)
)

// inkWindow finds where the ink is on the resized page (levels, dw x dh,
// c interleaved channels of which the last, blue, is looked at) and returns that
// window grown by inkMargin on each side and aligned to the model's
// 32-pixel grid. The paper level is the most common level of the page. ok
// is false when nothing on the page is clearly darker than the paper (the
// whole page is then detected: faint text is not ruled out on a guess).
func inkWindow(levels []float32, c, dw, dh int) (x0, y0, x1, y1 int, ok bool) {
	// Four histograms side by side: most samples are paper, and counting
	// them all in one bin would make each count wait for the one before.
	var hists [4][256]int32
	bin := func(v float32) int { return min(max(int(v+0.5), 0), 255) }
	i, step := c-1, 4*c
	for ; i+3*c < len(levels); i += step {
		hists[0][bin(levels[i])]++
		hists[1][bin(levels[i+c])]++
		hists[2][bin(levels[i+2*c])]++
		hists[3][bin(levels[i+3*c])]++
	}
	for ; i < len(levels); i += c {
		hists[0][bin(levels[i])]++
	}
	var hist [256]int32
	for _, h := range &hists {
		for l, n := range h {
			hist[l] += n
		}
	}
	paper := 0
	for l, n := range hist {
		if n > hist[paper] {
			paper = l
		}
	}
	thr := paper - inkContrast
	if thr <= 0 {
		return 0, 0, dw, dh, false
	}
	vt := float32(thr)
	rows, cols := make([]int, dh), make([]int, dw)
	for y := range dh {
		row := levels[y*dw*c : (y+1)*dw*c]
		n := 0
		// Counting without a branch: ink and paper alternate too often
		// along a line of text for a branch to be predicted.
		if c == 1 {
			row = row[:len(cols)]
			for x, v := range row {
				d := 0
				if v < vt {
					d = 1
				}
				n += d
				cols[x] += d
			}
		} else {
			for x := range cols {
				d := 0
				if row[x*c+c-1] < vt {
					d = 1
				}
				n += d
				cols[x] += d
			}
		}
		rows[y] = n
	}
	first := func(counts []int) int {
		for i, n := range counts {
			if n >= inkMinCount {
				return i
			}
		}
		return -1
	}
	last := func(counts []int) int {
		for i := len(counts) - 1; i >= 0; i-- {
			if counts[i] >= inkMinCount {
				return i
			}
		}
		return -1
	}
	ty, tx := first(rows), first(cols)
	if ty < 0 || tx < 0 {
		return 0, 0, dw, dh, false
	}
	by, bx := last(rows), last(cols)
	x0 = max(0, (tx-inkMargin)/32*32)
	y0 = max(0, (ty-inkMargin)/32*32)
	x1 = min(dw, (bx+inkMargin+32)/32*32)
	y1 = min(dh, (by+inkMargin+32)/32*32)
	return x0, y0, x1, y1, true
}

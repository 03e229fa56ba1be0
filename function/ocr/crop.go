package ocr

import "math"

// lineGeometry is how a line box is read: the quad in reading order (turned
// for vertical lines and, after the angle classifier, upside-down ones) and
// the size of its upright crop.
type lineGeometry struct {
	q      quad
	cw, ch float64
}

// newLineGeometry returns the crop of q as PaddleOCR's get_rotate_crop_image
// does: width and height are the longer opposite edges, and a crop at least
// 1.5 times taller than wide is turned 90 degrees counter-clockwise.
func newLineGeometry(q quad) lineGeometry {
	g := lineGeometry{q: q, cw: math.Floor(q.width()), ch: math.Floor(q.height())}
	if g.cw >= 1 && g.ch/g.cw >= 1.5 {
		g = lineGeometry{q: quad{q[1], q[2], q[3], q[0]}, cw: g.ch, ch: g.cw}
	}
	g.cw, g.ch = math.Max(g.cw, 1), math.Max(g.ch, 1)
	return g
}

// flipped returns the geometry turned 180 degrees.
func (g lineGeometry) flipped() lineGeometry {
	return lineGeometry{q: quad{g.q[2], g.q[3], g.q[0], g.q[1]}, cw: g.cw, ch: g.ch}
}

// scaledWidth is the crop's width once scaled to height h, rounded up.
func (g lineGeometry) scaledWidth(h int) int {
	return max(int(math.Ceil(float64(h)*g.cw/g.ch)), 1)
}

// sample writes the crop, scaled to rw x h, into dst as normalised CHW
// planes (B, G, R) of row stride stride: dst[c*planeSize + y*stride + x].
// Each output pixel maps through the scale and the perspective map of the
// quad straight into the page, so the page is sampled once (bilinear,
// replicated border) instead of being warped and then resized.
func (g lineGeometry) sample(r *raster, rw, h, stride, planeSize int, dst []float32) {
	hm := rectToQuad(g.cw, g.ch, g.q)
	if hm[6] == 0 && hm[7] == 0 && hm[8] == 1 {
		if hm[1] == 0 && hm[3] == 0 {
			g.sampleAxisAligned(r, hm, rw, h, stride, planeSize, dst)
			return
		}
		if r.c == 1 {
			g.sampleAffineGray(r, hm, rw, h, stride, planeSize, dst)
			return
		}
	}
	g.samplePerspective(r, hm, rw, h, stride, planeSize, dst)
}

// cropXs are the crop x coordinates of the rw output columns: the same on
// every row, so worked out once per line.
func (g lineGeometry) cropXs(rw int) []float64 {
	sx := g.cw / float64(rw)
	xs := make([]float64, rw)
	for u := range xs {
		xs[u] = cropCoord(u, sx, g.cw)
	}
	return xs
}

// samplePerspective is sample for any quad: each output pixel goes through
// the perspective map. Detected boxes have whole-pixel corners, so most
// are not exact parallelograms and take this path.
func (g lineGeometry) samplePerspective(r *raster, hm homography, rw, h, stride, planeSize int, dst []float32) {
	sy := g.ch / float64(h)
	maxX, maxY := float64(r.w-1), float64(r.h-1)
	w, p := r.w, r.pix
	cxs := g.cropXs(rw)
	for v := range h {
		cy := cropCoord(v, sy, g.ch)
		// Along a row the map is (a + b*cx) / (c + d*cx).
		ax, bx := hm[1]*cy+hm[2], hm[0]
		ay, by := hm[4]*cy+hm[5], hm[3]
		az, bz := hm[7]*cy+hm[8], hm[6]
		off := v * stride
		d0, d1, d2 := dst[off:off+rw], dst[planeSize+off:planeSize+off+rw], dst[2*planeSize+off:2*planeSize+off+rw]
		if r.c == 1 {
			for u, cx := range cxs {
				z := az + bz*cx
				x0, x1, fx := pageCoord((ax+bx*cx)/z, maxX, w)
				y0, y1, fy := pageCoord((ay+by*cx)/z, maxY, r.h)
				d0[u] = bilerp(p[y0*w+x0], p[y0*w+x1], p[y1*w+x0], p[y1*w+x1], fx, fy)*pixScale + pixShift
			}
			copy(d1, d0) // a gray page's three planes are the same
			copy(d2, d0)
			continue
		}
		for u, cx := range cxs {
			z := az + bz*cx
			x0, x1, fx := pageCoord((ax+bx*cx)/z, maxX, w)
			y0, y1, fy := pageCoord((ay+by*cx)/z, maxY, r.h)
			i00, i01, i10, i11 := (y0*w+x0)*3, (y0*w+x1)*3, (y1*w+x0)*3, (y1*w+x1)*3
			// Planes B, G, R from the page's R, G, B.
			d2[u] = bilerp(p[i00], p[i01], p[i10], p[i11], fx, fy)*pixScale + pixShift
			d1[u] = bilerp(p[i00+1], p[i01+1], p[i10+1], p[i11+1], fx, fy)*pixScale + pixShift
			d0[u] = bilerp(p[i00+2], p[i01+2], p[i10+2], p[i11+2], fx, fy)*pixScale + pixShift
		}
	}
}

// sampleAffineGray is sample for a gray page and a quad whose map has no
// perspective part (a parallelogram): the general path with the division
// by one left out, which changes no bit. Colour pages, rarer, take the
// general path.
func (g lineGeometry) sampleAffineGray(r *raster, hm homography, rw, h, stride, planeSize int, dst []float32) {
	sy := g.ch / float64(h)
	maxX, maxY := float64(r.w-1), float64(r.h-1)
	w, p := r.w, r.pix
	cxs := g.cropXs(rw)
	for v := range h {
		cy := cropCoord(v, sy, g.ch)
		ax, bx := hm[1]*cy+hm[2], hm[0]
		ay, by := hm[4]*cy+hm[5], hm[3]
		off := v * stride
		d0 := dst[off : off+rw]
		for u, cx := range cxs {
			x0, x1, fx := pageCoord(ax+bx*cx, maxX, w)
			y0, y1, fy := pageCoord(ay+by*cx, maxY, r.h)
			d0[u] = bilerp(p[y0*w+x0], p[y0*w+x1], p[y1*w+x0], p[y1*w+x1], fx, fy)*pixScale + pixShift
		}
		copy(dst[planeSize+off:planeSize+off+rw], d0) // the three planes are the same
		copy(dst[2*planeSize+off:2*planeSize+off+rw], d0)
	}
}

// sampleAxisAligned is sample for a crop whose map is a scale and a shift
// (an upright box, most lines of a page): x depends on the column only and
// y on the row only, so both are worked out once. The arithmetic is the
// general path's with its zero terms left out, which changes no bit.
func (g lineGeometry) sampleAxisAligned(r *raster, hm homography, rw, h, stride, planeSize int, dst []float32) {
	sy := g.ch / float64(h)
	maxX, maxY := float64(r.w-1), float64(r.h-1)
	w := r.w
	xs0 := make([]int, rw)
	xs1 := make([]int, rw)
	fxs := make([]float32, rw)
	for u, cx := range g.cropXs(rw) {
		xs0[u], xs1[u], fxs[u] = pageCoord(hm[2]+hm[0]*cx, maxX, w)
	}
	for v := range h {
		y0, y1, fy := pageCoord(hm[4]*cropCoord(v, sy, g.ch)+hm[5], maxY, r.h)
		off := v * stride
		d0, d1, d2 := dst[off:off+rw], dst[planeSize+off:planeSize+off+rw], dst[2*planeSize+off:2*planeSize+off+rw]
		if r.c == 1 {
			p0, p1 := r.pix[y0*w:(y0+1)*w], r.pix[y1*w:(y1+1)*w]
			for u, x0 := range xs0 {
				x1 := xs1[u]
				d0[u] = bilerp(p0[x0], p0[x1], p1[x0], p1[x1], fxs[u], fy)*pixScale + pixShift
			}
			copy(d1, d0)
			copy(d2, d0)
			continue
		}
		p0, p1 := r.pix[y0*w*3:(y0+1)*w*3], r.pix[y1*w*3:(y1+1)*w*3]
		for u, x0 := range xs0 {
			i0, i1 := x0*3, xs1[u]*3
			for k, d := range [3][]float32{d2, d1, d0} { // the page's R, G, B to planes B, G, R
				d[u] = bilerp(p0[i0+k], p0[i1+k], p1[i0+k], p1[i1+k], fxs[u], fy)*pixScale + pixShift
			}
		}
	}
}

// The recognizer's input: levels scaled to [-1, 1].
const pixScale, pixShift = float32(2.0 / 255), float32(-1.0)

// cropCoord is the crop coordinate of output pixel i, at s crop pixels per
// output pixel with pixel centres aligned, within the crop's size.
func cropCoord(i int, s, size float64) float64 {
	c := (float64(i)+0.5)*s - 0.5
	if c < 0 {
		return 0
	} else if c > size-1 {
		return size - 1
	}
	return c
}

// pageCoord clamps a page coordinate to [0, hi] and splits it into the
// pixel before it, the pixel after it (within n pixels) and the fraction
// between them.
func pageCoord(p, hi float64, n int) (int, int, float32) {
	if p < 0 {
		p = 0
	} else if p > hi {
		p = hi
	}
	i := int(p)
	return i, min(i+1, n-1), float32(p - float64(i))
}

// bilerp interpolates between four neighbouring levels.
func bilerp(p00, p01, p10, p11 uint8, fx, fy float32) float32 {
	a := float32(p00) + (float32(p01)-float32(p00))*fx
	b := float32(p10) + (float32(p11)-float32(p10))*fx
	return a + (b-a)*fy
}

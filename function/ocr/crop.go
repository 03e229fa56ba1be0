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
	if hm[1] == 0 && hm[3] == 0 && hm[6] == 0 && hm[7] == 0 && hm[8] == 1 {
		g.sampleAxisAligned(r, hm, rw, h, stride, planeSize, dst)
		return
	}
	g.samplePerspective(r, hm, rw, h, stride, planeSize, dst)
}

// samplePerspective is sample for any quad: each output pixel goes through
// the perspective map.
func (g lineGeometry) samplePerspective(r *raster, hm homography, rw, h, stride, planeSize int, dst []float32) {
	sx, sy := g.cw/float64(rw), g.ch/float64(h)
	maxX, maxY := float64(r.w-1), float64(r.h-1)
	const scale, shift = float32(2.0 / 255), float32(-1.0)
	w := r.w
	for v := range h {
		cy := (float64(v)+0.5)*sy - 0.5
		if cy < 0 {
			cy = 0
		} else if cy > g.ch-1 {
			cy = g.ch - 1
		}
		// Along a row the map is (a + b*cx) / (c + d*cx).
		ax, bx := hm[1]*cy+hm[2], hm[0]
		ay, by := hm[4]*cy+hm[5], hm[3]
		az, bz := hm[7]*cy+hm[8], hm[6]
		off := v * stride
		for u := range rw {
			cx := (float64(u)+0.5)*sx - 0.5
			if cx < 0 {
				cx = 0
			} else if cx > g.cw-1 {
				cx = g.cw - 1
			}
			z := az + bz*cx
			px, py := (ax+bx*cx)/z, (ay+by*cx)/z
			if px < 0 {
				px = 0
			} else if px > maxX {
				px = maxX
			}
			if py < 0 {
				py = 0
			} else if py > maxY {
				py = maxY
			}
			x0, y0 := int(px), int(py)
			fx, fy := float32(px-float64(x0)), float32(py-float64(y0))
			x1, y1 := x0+1, y0+1
			if x1 >= w {
				x1 = w - 1
			}
			if y1 >= r.h {
				y1 = r.h - 1
			}
			if r.c == 1 {
				p := r.pix
				p00, p01 := float32(p[y0*w+x0]), float32(p[y0*w+x1])
				p10, p11 := float32(p[y1*w+x0]), float32(p[y1*w+x1])
				a := p00 + (p01-p00)*fx
				b := p10 + (p11-p10)*fx
				val := (a+(b-a)*fy)*scale + shift
				dst[off+u] = val
				dst[planeSize+off+u] = val
				dst[2*planeSize+off+u] = val
				continue
			}
			i00, i01, i10, i11 := (y0*w+x0)*3, (y0*w+x1)*3, (y1*w+x0)*3, (y1*w+x1)*3
			p := r.pix
			for ch := range 3 {
				p00, p01 := float32(p[i00+ch]), float32(p[i01+ch])
				p10, p11 := float32(p[i10+ch]), float32(p[i11+ch])
				a := p00 + (p01-p00)*fx
				b := p10 + (p11-p10)*fx
				dst[ch*planeSize+off+u] = (a+(b-a)*fy)*scale + shift
			}
		}
	}
}

// sampleAxisAligned is sample for a crop whose map is a scale and a shift
// (an upright box, most lines of a page): x depends on the column only and
// y on the row only, so both are worked out once. The arithmetic is the
// general path's with its zero terms left out, which changes no bit.
func (g lineGeometry) sampleAxisAligned(r *raster, hm homography, rw, h, stride, planeSize int, dst []float32) {
	sx, sy := g.cw/float64(rw), g.ch/float64(h)
	maxX, maxY := float64(r.w-1), float64(r.h-1)
	const scale, shift = float32(2.0 / 255), float32(-1.0)
	w := r.w
	xs0 := make([]int32, rw)
	xs1 := make([]int32, rw)
	fxs := make([]float32, rw)
	for u := range rw {
		cx := (float64(u)+0.5)*sx - 0.5
		if cx < 0 {
			cx = 0
		} else if cx > g.cw-1 {
			cx = g.cw - 1
		}
		px := hm[2] + hm[0]*cx
		if px < 0 {
			px = 0
		} else if px > maxX {
			px = maxX
		}
		x0 := int(px)
		xs0[u], xs1[u], fxs[u] = int32(x0), int32(min(x0+1, w-1)), float32(px-float64(x0))
	}
	for v := range h {
		cy := (float64(v)+0.5)*sy - 0.5
		if cy < 0 {
			cy = 0
		} else if cy > g.ch-1 {
			cy = g.ch - 1
		}
		py := hm[4]*cy + hm[5]
		if py < 0 {
			py = 0
		} else if py > maxY {
			py = maxY
		}
		y0 := int(py)
		fy := float32(py - float64(y0))
		y1 := min(y0+1, r.h-1)
		off := v * stride
		d0, d1, d2 := dst[off:off+rw], dst[planeSize+off:planeSize+off+rw], dst[2*planeSize+off:2*planeSize+off+rw]
		if r.c == 1 {
			p0, p1 := r.pix[y0*w:(y0+1)*w], r.pix[y1*w:(y1+1)*w]
			for u, x0 := range xs0 {
				x1, fx := xs1[u], fxs[u]
				p00, p01 := float32(p0[x0]), float32(p0[x1])
				p10, p11 := float32(p1[x0]), float32(p1[x1])
				a := p00 + (p01-p00)*fx
				b := p10 + (p11-p10)*fx
				val := (a+(b-a)*fy)*scale + shift
				d0[u], d1[u], d2[u] = val, val, val
			}
			continue
		}
		p0, p1 := r.pix[y0*w*3:(y0+1)*w*3], r.pix[y1*w*3:(y1+1)*w*3]
		for u, x0 := range xs0 {
			i0, i1, fx := int(x0)*3, int(xs1[u])*3, fxs[u]
			for ch, d := range [3][]float32{d0, d1, d2} {
				p00, p01 := float32(p0[i0+ch]), float32(p0[i1+ch])
				p10, p11 := float32(p1[i0+ch]), float32(p1[i1+ch])
				a := p00 + (p01-p00)*fx
				b := p10 + (p11-p10)*fx
				d[u] = (a+(b-a)*fy)*scale + shift
			}
		}
	}
}

package ocr

import (
	"math"
	"slices"
)

// point is a position in image pixels.
type point struct{ X, Y float64 }

func (p point) sub(q point) point      { return point{p.X - q.X, p.Y - q.Y} }
func (p point) add(q point) point      { return point{p.X + q.X, p.Y + q.Y} }
func (p point) scale(f float64) point  { return point{p.X * f, p.Y * f} }
func (p point) dot(q point) float64    { return p.X*q.X + p.Y*q.Y }
func (p point) cross(q point) float64  { return p.X*q.Y - p.Y*q.X }
func (p point) norm() float64          { return math.Hypot(p.X, p.Y) }
func (p point) dist(q point) float64   { return p.sub(q).norm() }
func lerp(p, q point, t float64) point { return point{p.X + (q.X-p.X)*t, p.Y + (q.Y-p.Y)*t} }
func (p point) rot(c, s float64) point { return point{p.X*c - p.Y*s, p.X*s + p.Y*c} }
func (p point) in(w, h float64) point  { return point{clamp(p.X, 0, w), clamp(p.Y, 0, h)} }
func clamp(v, lo, hi float64) float64  { return math.Max(lo, math.Min(hi, v)) }
func clampi(v, lo, hi int) int         { return max(lo, min(hi, v)) }

// quad is a text line's box: top-left, top-right, bottom-right, bottom-left
// in reading direction.
type quad [4]point

// width is the longer of the top and bottom edges, height the longer of the
// left and right edges: the size of the upright crop.
func (q quad) width() float64  { return math.Max(q[0].dist(q[1]), q[2].dist(q[3])) }
func (q quad) height() float64 { return math.Max(q[0].dist(q[3]), q[1].dist(q[2])) }

// bounds returns the axis-aligned bounding box.
func (q quad) bounds() (minX, minY, maxX, maxY float64) {
	minX, minY, maxX, maxY = q[0].X, q[0].Y, q[0].X, q[0].Y
	for _, p := range q[1:] {
		minX, maxX = math.Min(minX, p.X), math.Max(maxX, p.X)
		minY, maxY = math.Min(minY, p.Y), math.Max(maxY, p.Y)
	}
	return
}

// angle is the direction of the top edge in radians (0 = horizontal).
func (q quad) angle() float64 {
	d := q[1].sub(q[0]).add(q[2].sub(q[3]))
	return math.Atan2(d.Y, d.X)
}

// rotRect is a rotated rectangle: centre, size along its own axes and the
// direction of its width axis.
type rotRect struct {
	c    point
	w, h float64
	u    point // unit vector along the width
}

// corners returns the four corners of r.
func (r rotRect) corners() quad {
	u := r.u.scale(r.w / 2)
	v := point{-r.u.Y, r.u.X}.scale(r.h / 2)
	return quad{r.c.sub(u).sub(v), r.c.add(u).sub(v), r.c.add(u).add(v), r.c.sub(u).add(v)}
}

// convexHull returns the convex hull of pts counter-clockwise (in a y-down
// frame: clockwise on screen), without collinear points. pts is reordered.
func convexHull(pts []point) []point {
	if len(pts) < 3 {
		return slices.Clone(pts)
	}
	slices.SortFunc(pts, func(a, b point) int {
		if a.X != b.X {
			if a.X < b.X {
				return -1
			}
			return 1
		}
		if a.Y < b.Y {
			return -1
		}
		if a.Y > b.Y {
			return 1
		}
		return 0
	})
	hull := make([]point, 0, 2*len(pts))
	for _, p := range pts {
		for len(hull) >= 2 && hull[len(hull)-1].sub(hull[len(hull)-2]).cross(p.sub(hull[len(hull)-2])) <= 0 {
			hull = hull[:len(hull)-1]
		}
		hull = append(hull, p)
	}
	lower := len(hull) + 1
	for i := len(pts) - 2; i >= 0; i-- {
		p := pts[i]
		for len(hull) >= lower && hull[len(hull)-1].sub(hull[len(hull)-2]).cross(p.sub(hull[len(hull)-2])) <= 0 {
			hull = hull[:len(hull)-1]
		}
		hull = append(hull, p)
	}
	return hull[:len(hull)-1]
}

// minAreaRect returns the rectangle of least area that holds pts (reordered),
// by trying the direction of every convex hull edge.
func minAreaRect(pts []point) rotRect {
	hull := convexHull(pts)
	switch len(hull) {
	case 0:
		return rotRect{u: point{1, 0}}
	case 1:
		return rotRect{c: hull[0], u: point{1, 0}}
	case 2:
		d := hull[1].sub(hull[0])
		n := d.norm()
		if n == 0 {
			return rotRect{c: hull[0], u: point{1, 0}}
		}
		return rotRect{c: lerp(hull[0], hull[1], 0.5), w: n, u: d.scale(1 / n)}
	}
	best := rotRect{w: math.Inf(1), h: math.Inf(1)}
	bestArea := math.Inf(1)
	for i := range hull {
		e := hull[(i+1)%len(hull)].sub(hull[i])
		n := e.norm()
		if n == 0 {
			continue
		}
		u := e.scale(1 / n)
		v := point{-u.Y, u.X}
		minU, maxU, minV, maxV := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
		for _, p := range hull {
			a, b := p.dot(u), p.dot(v)
			minU, maxU = math.Min(minU, a), math.Max(maxU, a)
			minV, maxV = math.Min(minV, b), math.Max(maxV, b)
		}
		if area := (maxU - minU) * (maxV - minV); area < bestArea {
			bestArea = area
			c := u.scale((minU + maxU) / 2).add(v.scale((minV + maxV) / 2))
			best = rotRect{c: c, w: maxU - minU, h: maxV - minV, u: u}
		}
	}
	return best.normalised()
}

// normalised turns r so that its width axis points right and lies within
// ±45° of horizontal, swapping width and height when needed: text lines read
// left to right whatever edge the hull walk started from.
func (r rotRect) normalised() rotRect {
	u := r.u
	if math.Abs(u.Y) > math.Abs(u.X) { // more vertical than horizontal: turn 90°
		u = point{u.Y, -u.X}
		r.w, r.h = r.h, r.w
	}
	if u.X < 0 {
		u = u.scale(-1)
	}
	r.u = u
	return r
}

// orderClockwise orders four points as top-left, top-right, bottom-right,
// bottom-left (PaddleOCR's order_points_clockwise): the smallest x+y is the
// top-left, the largest the bottom-right, and of the other two the smaller
// y-x is the top-right.
func orderClockwise(q quad) quad {
	iMin, iMax := 0, 0
	for i, p := range q {
		if p.X+p.Y < q[iMin].X+q[iMin].Y {
			iMin = i
		}
		if p.X+p.Y > q[iMax].X+q[iMax].Y {
			iMax = i
		}
	}
	if iMin == iMax {
		return q
	}
	var rest []point
	for i, p := range q {
		if i != iMin && i != iMax {
			rest = append(rest, p)
		}
	}
	tr, bl := rest[0], rest[1]
	if tr.Y-tr.X > bl.Y-bl.X {
		tr, bl = bl, tr
	}
	return quad{q[iMin], tr, q[iMax], bl}
}

// homography maps the rectangle (0,0)-(w,h) onto a quad.
type homography [9]float64

// rectToQuad returns the projective map taking (0,0), (w,0), (w,h), (0,h) to
// q[0..3]. It solves the 8x8 system directly; a degenerate quad falls back to
// the affine map of its first three corners.
func rectToQuad(w, h float64, q quad) homography {
	src := [4]point{{0, 0}, {w, 0}, {w, h}, {0, h}}
	var a [8][9]float64
	for i := range 4 {
		x, y, u, v := src[i].X, src[i].Y, q[i].X, q[i].Y
		a[2*i] = [9]float64{x, y, 1, 0, 0, 0, -u * x, -u * y, u}
		a[2*i+1] = [9]float64{0, 0, 0, x, y, 1, -v * x, -v * y, v}
	}
	// Gaussian elimination with partial pivoting.
	for col := range 8 {
		piv := col
		for r := col + 1; r < 8; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[piv][col]) {
				piv = r
			}
		}
		if math.Abs(a[piv][col]) < 1e-12 {
			return affineRectToQuad(w, h, q)
		}
		a[col], a[piv] = a[piv], a[col]
		for r := range 8 {
			if r == col {
				continue
			}
			f := a[r][col] / a[col][col]
			for c := col; c < 9; c++ {
				a[r][c] -= f * a[col][c]
			}
		}
	}
	var m homography
	for i := range 8 {
		m[i] = a[i][8] / a[i][i]
	}
	m[8] = 1
	return m
}

func affineRectToQuad(w, h float64, q quad) homography {
	w, h = math.Max(w, 1e-9), math.Max(h, 1e-9)
	ux := q[1].sub(q[0]).scale(1 / w)
	vy := q[3].sub(q[0]).scale(1 / h)
	return homography{ux.X, vy.X, q[0].X, ux.Y, vy.Y, q[0].Y, 0, 0, 1}
}

// apply maps (x, y).
func (m *homography) apply(x, y float64) (float64, float64) {
	d := m[6]*x + m[7]*y + m[8]
	if d == 0 {
		d = 1e-12
	}
	return (m[0]*x + m[1]*y + m[2]) / d, (m[3]*x + m[4]*y + m[5]) / d
}

// pointInConvex reports whether p lies inside or on the convex polygon poly
// given in either orientation.
func pointInConvex(poly []point, p point) bool {
	sign := 0.0
	for i := range poly {
		a, b := poly[i], poly[(i+1)%len(poly)]
		c := b.sub(a).cross(p.sub(a))
		if c == 0 {
			continue
		}
		if sign == 0 {
			sign = c
		} else if (c > 0) != (sign > 0) {
			return false
		}
	}
	return true
}

// polygonArea returns the absolute area of a simple polygon.
func polygonArea(poly []point) float64 {
	s := 0.0
	for i := range poly {
		s += poly[i].cross(poly[(i+1)%len(poly)])
	}
	return math.Abs(s) / 2
}

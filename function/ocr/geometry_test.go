package ocr

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestMinAreaRect(t *testing.T) {
	for _, deg := range []float64{0, 2, -2, 10, 30, -40} {
		th := deg * math.Pi / 180
		c, s := math.Cos(th), math.Sin(th)
		var pts []point
		// A filled 200 x 20 rectangle, rotated about (500, 300).
		for x := -100.0; x <= 100; x += 2 {
			for y := -10.0; y <= 10; y += 2 {
				pts = append(pts, point{x, y}.rot(c, s).add(point{500, 300}))
			}
		}
		r := minAreaRect(pts)
		if !near(r.w, 200, 0.5) || !near(r.h, 20, 0.5) {
			t.Errorf("%v°: size %.2f x %.2f, want 200 x 20", deg, r.w, r.h)
		}
		if !near(r.c.X, 500, 0.5) || !near(r.c.Y, 300, 0.5) {
			t.Errorf("%v°: centre %v", deg, r.c)
		}
		if got := math.Atan2(r.u.Y, r.u.X) * 180 / math.Pi; !near(got, deg, 0.1) {
			t.Errorf("%v°: angle %.2f", deg, got)
		}
		q := orderClockwise(r.corners())
		if q[0].X > q[1].X || q[0].Y > q[3].Y || q[1].Y > q[2].Y {
			t.Errorf("%v°: corners not TL, TR, BR, BL: %v", deg, q)
		}
	}
}

func TestMinAreaRectDegenerate(t *testing.T) {
	if r := minAreaRect(nil); r.w != 0 || r.h != 0 {
		t.Errorf("empty: %+v", r)
	}
	if r := minAreaRect([]point{{1, 1}, {1, 1}}); r.w != 0 || r.h != 0 {
		t.Errorf("one point: %+v", r)
	}
	if r := minAreaRect([]point{{0, 0}, {10, 0}, {5, 0}}); !near(r.w, 10, 1e-9) || r.h != 0 {
		t.Errorf("collinear: %+v", r)
	}
}

func TestHomography(t *testing.T) {
	q := quad{{10, 20}, {110, 25}, {108, 60}, {12, 52}}
	h := rectToQuad(100, 30, q)
	for i, p := range []point{{0, 0}, {100, 0}, {100, 30}, {0, 30}} {
		x, y := h.apply(p.X, p.Y)
		if !near(x, q[i].X, 1e-6) || !near(y, q[i].Y, 1e-6) {
			t.Errorf("corner %d maps to (%v,%v), want %v", i, x, y, q[i])
		}
	}
	// A degenerate quad falls back to an affine map instead of NaNs.
	h = rectToQuad(10, 10, quad{{0, 0}, {0, 0}, {0, 0}, {0, 0}})
	if x, y := h.apply(5, 5); math.IsNaN(x) || math.IsNaN(y) {
		t.Error("degenerate quad gives NaN")
	}
}

func TestPointInConvex(t *testing.T) {
	sq := []point{{0, 0}, {10, 0}, {10, 10}, {0, 10}}
	for p, want := range map[point]bool{{5, 5}: true, {0, 0}: true, {10, 5}: true, {11, 5}: false, {-1, -1}: false} {
		if got := pointInConvex(sq, p); got != want {
			t.Errorf("%v: %v, want %v", p, got, want)
		}
	}
	if a := polygonArea(sq); a != 100 {
		t.Errorf("area %v", a)
	}
}

func TestLineGeometry(t *testing.T) {
	g := newLineGeometry(quad{{0, 0}, {300, 0}, {300, 30}, {0, 30}})
	if g.cw != 300 || g.ch != 30 || g.scaledWidth(48) != 480 {
		t.Errorf("horizontal: %+v width %d", g, g.scaledWidth(48))
	}
	// A tall box is read turned 90° counter-clockwise.
	v := newLineGeometry(quad{{0, 0}, {30, 0}, {30, 300}, {0, 300}})
	if v.cw != 300 || v.ch != 30 || v.q[0] != (point{30, 0}) {
		t.Errorf("vertical: %+v", v)
	}
	if f := g.flipped(); f.q[0] != g.q[2] {
		t.Errorf("flipped: %+v", f)
	}
}

func TestSampleNormalises(t *testing.T) {
	r := &raster{w: 20, h: 10, c: 1, pix: make([]uint8, 200)}
	for i := range r.pix {
		r.pix[i] = 255
	}
	g := newLineGeometry(quad{{0, 0}, {20, 0}, {20, 10}, {0, 10}})
	dst := make([]float32, 3*48*96)
	g.sample(r, 96, 48, 96, 48*96, dst)
	for i, v := range dst {
		if !near(float64(v), 1, 1e-5) {
			t.Fatalf("dst[%d] = %v, want 1 (white)", i, v)
		}
	}
	rgb := &raster{w: 4, h: 4, c: 3, pix: make([]uint8, 48)}
	for i := 0; i < 48; i += 3 {
		rgb.pix[i], rgb.pix[i+1], rgb.pix[i+2] = 255, 0, 0 // pure red, stored R, G, B
	}
	for _, q := range []quad{{{0, 0}, {4, 0}, {4, 4}, {0, 4}}, {{0, 0.2}, {4, 0}, {4, 4}, {0, 4}}} { // upright and skewed paths
		g = newLineGeometry(q)
		dst = make([]float32, 3*4*4)
		g.sample(rgb, 4, 4, 4, 16, dst)
		if dst[5] != -1 || dst[16+5] != -1 || dst[32+5] != 1 {
			t.Errorf("quad %v: planes B, G, R = %v %v %v, want -1 -1 1", q, dst[5], dst[16+5], dst[32+5])
		}
	}
}

// TestSampleAxisAlignedMatchesPerspective checks the upright-box fast path
// against the general one, bit for bit, on gray and colour pages, with
// boxes at fractional positions, scaled up and down and touching the edges.
func TestSampleAxisAlignedMatchesPerspective(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	compared := 0
	for _, c := range []int{1, 3} {
		r := &raster{w: 120, h: 80, c: c, pix: make([]uint8, 120*80*c)}
		for i := range r.pix {
			r.pix[i] = uint8(rng.IntN(256))
		}
		for trial := range 200 {
			x0, y0 := rng.Float64()*130-5, rng.Float64()*90-5
			x1, y1 := x0+1+rng.Float64()*100, y0+1+rng.Float64()*30
			g := newLineGeometry(quad{{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}})
			hm := rectToQuad(g.cw, g.ch, g.q)
			if hm[1] != 0 || hm[3] != 0 || hm[6] != 0 || hm[7] != 0 || hm[8] != 1 {
				continue // turned 90 degrees: not upright
			}
			h := 16 + rng.IntN(40)
			rw := g.scaledWidth(h)
			stride := rw + rng.IntN(8)
			fast := make([]float32, 3*h*stride)
			slow := make([]float32, 3*h*stride)
			g.sampleAxisAligned(r, hm, rw, h, stride, h*stride, fast)
			g.samplePerspective(r, hm, rw, h, stride, h*stride, slow)
			if !slices.Equal(fast, slow) {
				t.Fatalf("c=%d trial %d: box (%.2f,%.2f)-(%.2f,%.2f) at %dx%d: fast path differs", c, trial, x0, y0, x1, y1, rw, h)
			}
			compared++
		}
	}
	if compared < 300 {
		t.Fatalf("only %d of 400 boxes were upright with an exact scale-and-shift map", compared)
	}
}

// TestSampleAffineGrayMatchesPerspective checks the parallelogram fast
// path of gray pages against the general one, bit for bit, on skewed
// boxes at fractional positions, some reaching past the edges.
func TestSampleAffineGrayMatchesPerspective(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	r := &raster{w: 120, h: 80, c: 1, pix: make([]uint8, 120*80)}
	for i := range r.pix {
		r.pix[i] = uint8(rng.IntN(256))
	}
	compared := 0
	for trial := range 300 {
		x0, y0 := rng.Float64()*130-5, rng.Float64()*90-5
		dx, dy := 10+rng.Float64()*90, rng.Float64()*20-10 // along the line
		hx, hy := rng.Float64()*6-3, 5+rng.Float64()*25    // across it
		g := newLineGeometry(quad{{x0, y0}, {x0 + dx, y0 + dy}, {x0 + dx + hx, y0 + dy + hy}, {x0 + hx, y0 + hy}})
		hm := rectToQuad(g.cw, g.ch, g.q)
		if hm[6] != 0 || hm[7] != 0 || hm[8] != 1 || hm[1] == 0 && hm[3] == 0 {
			continue // not an exact affine map, or an upright one
		}
		h := 16 + rng.IntN(40)
		rw := g.scaledWidth(h)
		stride := rw + rng.IntN(8)
		fast := make([]float32, 3*h*stride)
		slow := make([]float32, 3*h*stride)
		g.sampleAffineGray(r, hm, rw, h, stride, h*stride, fast)
		g.samplePerspective(r, hm, rw, h, stride, h*stride, slow)
		if !slices.Equal(fast, slow) {
			t.Fatalf("trial %d: quad %v at %dx%d: fast path differs", trial, g.q, rw, h)
		}
		compared++
	}
	if compared < 50 {
		t.Fatalf("only %d of 300 quads had an exact affine map", compared)
	}
}

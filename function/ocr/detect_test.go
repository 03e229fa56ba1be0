package ocr

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestDetSize(t *testing.T) {
	c := DefaultConfig("").Detect
	c.LimitSide = 960
	for _, tc := range []struct{ w, h, ww, wh int }{
		{2480, 3508, 672, 960},
		{800, 600, 800, 608},
		{10, 10, 32, 32},
		{1700, 2200, 736, 960},
	} {
		if w, h := detSize(tc.w, tc.h, c); w != tc.ww || h != tc.wh {
			t.Errorf("detSize(%d, %d) = %d, %d, want %d, %d", tc.w, tc.h, w, h, tc.ww, tc.wh)
		}
	}
	c.LimitType, c.LimitSide = "min", 736
	if w, h := detSize(368, 500, c); w != 736 || h != 992 {
		t.Errorf("min: %d, %d", w, h)
	}
}

// detInput is the detector's whole-page input: r resized to dw x dh and
// normalised into three planes.
func detInput(r *raster, dw, dh int, dst []float32) {
	levels := make([]float32, r.c*dw*dh)
	detResize(r, dw, dh, levels)
	detPlanes(levels, r.c, dw, 0, 0, dw, dh, dst)
}

// TestDetResizeDirect checks that the direct resize of pages scaled down
// to half or less gives the row-buffered resize's values bit for bit, on
// noisy gray and colour pages and on scales around the switch-over.
func TestDetResizeDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []int{1, 3} {
		for _, tc := range []struct{ w, h, dw, dh int }{
			{100, 80, 50, 40}, {101, 81, 50, 40}, {333, 517, 64, 96}, {64, 64, 32, 1}, {97, 200, 33, 100}, {40, 300, 96, 32},
		} {
			r := &raster{w: tc.w, h: tc.h, c: c, pix: make([]uint8, c*tc.w*tc.h)}
			for i := range r.pix {
				r.pix[i] = uint8(rng.IntN(256))
			}
			want := make([]float32, c*tc.dw*tc.dh)
			got := make([]float32, len(want))
			detResizeRows(r, tc.dw, tc.dh, want)
			detResizeDirect(r, tc.dw, tc.dh, got)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%d channels, %dx%d to %dx%d: value %d = %v, want %v", c, tc.w, tc.h, tc.dw, tc.dh, i, got[i], want[i])
				}
			}
		}
	}
}

func TestDetInputNormalises(t *testing.T) {
	r := &raster{w: 64, h: 64, c: 1, pix: make([]uint8, 64*64)}
	for i := range r.pix {
		r.pix[i] = 255
	}
	dst := make([]float32, 3*32*32)
	detInput(r, 32, 32, dst)
	for ch := range 3 {
		want := (1 - detMean[ch]) / detStd[ch]
		if got := dst[ch*1024+500]; !near(float64(got), float64(want), 1e-4) {
			t.Errorf("channel %d = %v, want %v", ch, got, want)
		}
	}
	// A red page, stored R, G, B: only the last plane (red) is at full level.
	red := &raster{w: 64, h: 64, c: 3, pix: make([]uint8, 3*64*64)}
	for i := 0; i < len(red.pix); i += 3 {
		red.pix[i] = 255
	}
	detInput(red, 32, 32, dst)
	for ch, level := range []float32{0, 0, 1} {
		want := (level - detMean[ch]) / detStd[ch]
		if got := dst[ch*1024+500]; !near(float64(got), float64(want), 1e-4) {
			t.Errorf("red page, plane %d = %v, want %v", ch, got, want)
		}
	}
}

// TestDBBoxes draws a slanted text blob and a speck on a probability map
// and checks the box found for the blob, scaled back to the page.
func TestDBBoxes(t *testing.T) {
	const w, h = 200, 100
	prob := make([]float32, w*h)
	th := 3 * math.Pi / 180
	for y := range h {
		for x := range w {
			// Rotate back into the blob's frame: 120 x 10 centred at (100, 50).
			dx, dy := float64(x)-100, float64(y)-50
			u, v := dx*math.Cos(th)+dy*math.Sin(th), -dx*math.Sin(th)+dy*math.Cos(th)
			if math.Abs(u) <= 60 && math.Abs(v) <= 5 {
				prob[y*w+x] = 0.9
			}
		}
	}
	prob[10*w+10] = 0.95 // a speck: dropped for its size
	c := DefaultConfig("").Detect
	boxes := dbBoxes(prob, w, h, mapWindow{dw: w, dh: h}, 2*w, 2*h, c)
	if len(boxes) != 1 {
		t.Fatalf("got %d boxes, want 1: %v", len(boxes), boxes)
	}
	b := boxes[0]
	if b.score < 0.85 {
		t.Errorf("score %.3f", b.score)
	}
	q := b.q
	// Kernel 120 x 10 grown by d = 1200*2/260 ≈ 9.2 per side, then doubled.
	if wdt, hgt := q.width(), q.height(); !near(wdt, 2*138.5, 6) || !near(hgt, 2*28.5, 6) {
		t.Errorf("box %.1f x %.1f, want about 277 x 57: %v", wdt, hgt, q)
	}
	if a := q.angle() * 180 / math.Pi; !near(a, 3, 0.7) {
		t.Errorf("angle %.2f°, want 3", a)
	}
	cx, cy := (q[0].X+q[2].X)/2, (q[0].Y+q[2].Y)/2
	if !near(cx, 200, 3) || !near(cy, 100, 3) {
		t.Errorf("centre (%.1f, %.1f), want (200, 100)", cx, cy)
	}
}

func TestDBBoxesEmptyAndFull(t *testing.T) {
	c := DefaultConfig("").Detect
	if b := dbBoxes(make([]float32, 32*32), 32, 32, mapWindow{dw: 32, dh: 32}, 32, 32, c); len(b) != 0 {
		t.Errorf("empty map: %v", b)
	}
	full := make([]float32, 32*32)
	for i := range full {
		full[i] = 1
	}
	b := dbBoxes(full, 32, 32, mapWindow{dw: 32, dh: 32}, 64, 64, c)
	if len(b) != 1 {
		t.Fatalf("full map: %v", b)
	}
	for _, p := range b[0].q {
		if p.X < 0 || p.Y < 0 || p.X > 63 || p.Y > 63 {
			t.Errorf("corner %v outside the page", p)
		}
	}
}

func TestInkWindow(t *testing.T) {
	const dw, dh = 320, 480
	page := func() []float32 {
		p := make([]float32, dw*dh)
		for i := range p {
			p[i] = 230 // paper
		}
		return p
	}
	const ink = 30
	p := page()
	for y := 200; y < 230; y++ {
		for x := 150; x < 170; x++ {
			p[y*dw+x] = ink
		}
	}
	p[5*dw+300] = ink // a single speck is not ink
	x0, y0, x1, y1, ok := inkWindow(p, 1, dw, dh)
	if !ok || x0 != 32 || y0 != 96 || x1 != 288 || y1 != 352 {
		t.Fatalf("window (%d,%d)-(%d,%d) ok=%v, want (32,96)-(288,352): the ink grown by %d and aligned to 32", x0, y0, x1, y1, ok, inkMargin)
	}
	if _, _, _, _, ok := inkWindow(page(), 1, dw, dh); ok {
		t.Fatal("blank page: want no window (the whole page is detected)")
	}
	// Ink near the border: the window stops at the page.
	p = page()
	for y := range 10 {
		p[y*dw] = ink
		p[y*dw+1] = ink
	}
	if x0, y0, _, _, ok := inkWindow(p, 1, dw, dh); !ok || x0 != 0 || y0 != 0 {
		t.Fatalf("ink at the corner: window from (%d,%d), want (0,0)", x0, y0)
	}
}

// floodRegions is the plain reference for mapRegions: a flood fill from
// each unlabelled pixel in raster order.
func floodRegions(prob []float32, mw, mh int, thr float32) []mapRegion {
	label := make([]bool, mw*mh)
	var out []mapRegion
	for start := range prob {
		if prob[start] <= thr || label[start] {
			continue
		}
		reg := mapRegion{y0: start / mw}
		label[start] = true
		stack := []int{start}
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			x, y := i%mw, i/mw
			for ry := y - reg.y0; ry >= len(reg.rowMin); {
				reg.rowMin = append(reg.rowMin, math.MaxInt32)
				reg.rowMax = append(reg.rowMax, -1)
			}
			ry := y - reg.y0
			reg.rowMin[ry] = min(reg.rowMin[ry], int32(x))
			reg.rowMax[ry] = max(reg.rowMax[ry], int32(x))
			for ny := max(y-1, 0); ny <= min(y+1, mh-1); ny++ {
				for nx := max(x-1, 0); nx <= min(x+1, mw-1); nx++ {
					if j := ny*mw + nx; !label[j] && prob[j] > thr {
						label[j] = true
						stack = append(stack, j)
					}
				}
			}
		}
		out = append(out, reg)
	}
	return out
}

func TestMapRegionsMatchFloodFill(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := range 300 {
		mw, mh := 1+rng.IntN(40), 1+rng.IntN(40)
		density := rng.Float64()
		prob := make([]float32, mw*mh)
		for i := range prob {
			if rng.Float64() < density {
				prob[i] = 0.9
			}
		}
		want := floodRegions(prob, mw, mh, 0.3)
		got := mapRegions(prob, mw, mh, 0.3, len(want)+1)
		if len(got) != len(want) {
			t.Fatalf("trial %d (%dx%d): %d regions, want %d", trial, mw, mh, len(got), len(want))
		}
		for k := range want {
			g, w := got[k], want[k]
			if g.y0 != w.y0 || !slices.Equal(g.rowMin, w.rowMin) || !slices.Equal(g.rowMax, w.rowMax) {
				t.Fatalf("trial %d (%dx%d), region %d: got %+v, want %+v", trial, mw, mh, k, g, w)
			}
		}
		if limited := mapRegions(prob, mw, mh, 0.3, 2); len(want) >= 2 && len(limited) != 2 {
			t.Fatalf("trial %d: limit 2 gives %d regions", trial, len(limited))
		}
	}
}

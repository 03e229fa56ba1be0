package ocr

import (
	"context"
	"fmt"
	"math"
	"time"
)

// OCR detects and reads the lines of one page image.
func (e *Engine) OCR(ctx context.Context, name string, data []byte) (*Layout, Timing, error) {
	var t Timing
	img, err := e.decodeTimed(data, &t)
	if err != nil {
		return nil, t, err
	}
	defer img.release()
	quads, err := e.detect(ctx, img, &t)
	if err != nil {
		return nil, t, err
	}
	lay := buildLayout(name, img.w, img.h, quads)
	if err := e.read(ctx, img, lay, true, &t); err != nil {
		return nil, t, err
	}
	return lay, t, nil
}

// Detect finds the text lines of one page image, without reading them.
func (e *Engine) Detect(ctx context.Context, name string, data []byte) (*Layout, Timing, error) {
	var t Timing
	img, err := e.decodeTimed(data, &t)
	if err != nil {
		return nil, t, err
	}
	defer img.release()
	quads, err := e.detect(ctx, img, &t)
	if err != nil {
		return nil, t, err
	}
	return buildLayout(name, img.w, img.h, quads), t, nil
}

// Recognize reads the lines of lay (from a detect stage or another tool's
// PAGE XML) on the page image and fills in their text, confidence and words.
func (e *Engine) Recognize(ctx context.Context, data []byte, lay *Layout) (Timing, error) {
	var t Timing
	img, err := e.decodeTimed(data, &t)
	if err != nil {
		return t, err
	}
	defer img.release()
	if lay.Width != 0 && lay.Height != 0 && (lay.Width != img.w || lay.Height != img.h) {
		return t, fmt.Errorf("PAGE XML is for a %dx%d image, the image is %dx%d", lay.Width, lay.Height, img.w, img.h)
	}
	lay.Width, lay.Height = img.w, img.h
	return t, e.read(ctx, img, lay, false, &t)
}

func (e *Engine) decodeTimed(data []byte, t *Timing) (*raster, error) {
	start := time.Now()
	img, err := e.decode(data)
	t.Decode += time.Since(start)
	return img, err
}

// read recognises every line of lay. Lines scoring under MinScore lose
// their text; with drop set (the ocr stage's own detections) they are
// removed, as they are mostly specks taken for text.
func (e *Engine) read(ctx context.Context, img *raster, lay *Layout, drop bool, t *Timing) error {
	lines := lay.Lines()
	geos := make([]lineGeometry, 0, len(lines))
	idx := make([]int, 0, len(lines))
	for i, l := range lines {
		q := l.quad
		if q == (quad{}) {
			var ok bool
			if q, ok = fitQuad(l.Coords); !ok {
				continue // a line without area: nothing to read
			}
			l.quad = q
		}
		geos = append(geos, newLineGeometry(q))
		idx = append(idx, i)
	}
	return e.readGeometries(ctx, img, lay, lines, geos, idx, drop, t)
}

// readWith reads the single line of lay with the given geometry (nil: its own).
func (e *Engine) readWith(ctx context.Context, img *raster, lay *Layout, g *lineGeometry, t *Timing) error {
	if g == nil {
		return e.read(ctx, img, lay, false, t)
	}
	return e.readGeometries(ctx, img, lay, lay.Lines(), []lineGeometry{*g}, []int{0}, false, t)
}

func (e *Engine) readGeometries(ctx context.Context, img *raster, lay *Layout, lines []*Line, geos []lineGeometry, idx []int, drop bool, t *Timing) error {
	rec, err := e.recognize(ctx, img, geos, t)
	if err != nil {
		return err
	}
	minScore := e.cfg.Recognize.MinScore
	for k, r := range rec {
		l := lines[idx[k]]
		l.Text, l.Conf, l.Words = "", r.score, nil
		if r.score >= minScore && r.text != "" {
			l.Text = r.text
			l.Words = r.words(e.dict)
		}
	}
	if drop {
		for ri := range lay.Regions {
			reg := &lay.Regions[ri]
			kept := reg.Lines[:0]
			for _, l := range reg.Lines {
				if l.Text != "" {
					kept = append(kept, l)
				}
			}
			reg.Lines = kept
			var pts []point
			for _, l := range kept {
				pts = append(pts, l.quad[:]...)
			}
			reg.Coords = regionOutline(pts)
		}
		kept := lay.Regions[:0]
		for _, reg := range lay.Regions {
			if len(reg.Lines) > 0 {
				kept = append(kept, reg)
			}
		}
		lay.Regions = kept
	}
	return nil
}

// LineLayout returns the layout of an image that holds a single text line:
// one region with one line covering the whole image.
func LineLayout(name string, w, h int) *Layout {
	q := quad{{0, 0}, {float64(w), 0}, {float64(w), float64(h)}, {0, float64(h)}}
	return &Layout{ImageName: name, Width: w, Height: h, Regions: []Region{{
		ID:     "r1",
		Coords: quadPoints(q),
		Lines:  []Line{{ID: "r1-l1", Coords: quadPoints(q), Baseline: baselineOf(q), quad: q}},
	}}}
}

// ReadLine reads an image that holds a single text line. The line is cut
// to its ink with a margin of a quarter of the ink height, the framing the
// detector gives lines on a page (a loose crop scales the text down and
// the recogniser starts to drop spaces and letters).
func (e *Engine) ReadLine(ctx context.Context, name string, data []byte) (*Layout, Timing, error) {
	var t Timing
	img, err := e.decodeTimed(data, &t)
	if err != nil {
		return nil, t, err
	}
	defer img.release()
	lay := LineLayout(name, img.w, img.h)
	var geo *lineGeometry
	start := time.Now()
	if q, ok := inkBox(img, 0.25); ok {
		g := newLineGeometry(q)
		geo = &g
	}
	t.Recognize += time.Since(start) // cutting the line is part of reading it
	if err := e.readWith(ctx, img, lay, geo, &t); err != nil {
		return nil, t, err
	}
	return lay, t, nil
}

// inkBox finds the box around the dark pixels of a light image (darker than
// the midpoint between the darkest and the lightest levels) and grows it by
// margin times its height on every side, within the image: a crop that is
// already tight (a line cut from a PAGE polygon) stays as it is.
func inkBox(r *raster, margin float64) (quad, bool) {
	// Luminance row by row: gray rows as they are, colour ones weighted.
	lum := make([]uint8, r.w)
	row := func(y int) []uint8 {
		if r.c == 1 {
			return r.pix[y*r.w : (y+1)*r.w]
		}
		src := r.pix[y*r.w*3 : (y+1)*r.w*3]
		for x := range lum {
			lum[x] = uint8((int(src[3*x]) + 2*int(src[3*x+1]) + int(src[3*x+2])) / 4)
		}
		return lum
	}
	lo, hi := uint8(255), uint8(0)
	for y := range r.h {
		for _, v := range row(y) {
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if int(hi)-int(lo) < 32 {
		return quad{}, false // no contrast: nothing to cut to
	}
	thr := uint8((int(lo) + int(hi)) / 2)
	x0, y0, x1, y1 := r.w, r.h, -1, -1
	for y := range r.h {
		l := row(y)
		first := -1
		for x, v := range l {
			if v < thr {
				first = x
				break
			}
		}
		if first < 0 {
			continue
		}
		last := first
		for x := len(l) - 1; x > first; x-- {
			if l[x] < thr {
				last = x
				break
			}
		}
		x0, x1 = min(x0, first), max(x1, last)
		y0, y1 = min(y0, y), max(y1, y)
	}
	if x1 < 0 {
		return quad{}, false
	}
	m := margin * float64(y1-y0+1)
	fx0, fy0 := math.Max(float64(x0)-m, 0), math.Max(float64(y0)-m, 0)
	fx1, fy1 := math.Min(float64(x1+1)+m, float64(r.w)), math.Min(float64(y1+1)+m, float64(r.h))
	if fx1-fx0 < 2 || fy1-fy0 < 2 {
		return quad{}, false
	}
	return quad{{fx0, fy0}, {fx1, fy0}, {fx1, fy1}, {fx0, fy1}}, true
}

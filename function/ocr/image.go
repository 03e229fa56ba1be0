package ocr

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // decoders registered for image.Decode
	_ "image/jpeg"
	_ "image/png"
	"sync"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"
)

// raster is a decoded page: 8-bit samples, c = 1 (gray) or 3 (R, G, B, as
// PNG and the image package hold them; the models take B, G, R planes, and
// the steps that fill them swap the order as they read), rows stored top to
// bottom without padding.
type raster struct {
	w, h, c int
	pix     []uint8
}

// slicePool recycles large buffers (decoded pages, the detector's planes
// and maps, recognizer batches): a fresh one per page costs the clearing of
// megabytes and makes the garbage collector work inside the page's steps.
type slicePool[T any] struct{ p sync.Pool }

// get returns a buffer of n elements with undefined contents.
func (sp *slicePool[T]) get(n int) []T {
	if b, ok := sp.p.Get().(*[]T); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]T, n)
}

func (sp *slicePool[T]) put(b []T) { sp.p.Put(&b) }

var (
	bytePool  slicePool[byte]
	floatPool slicePool[float32]
)

// release hands the raster's pixels back for the next page; r must not be
// used after it.
func (r *raster) release() {
	if r != nil && r.pix != nil {
		bytePool.put(r.pix[:cap(r.pix)])
		r.pix = nil
	}
}

// at returns channel ch of pixel (x, y) in the models' order (0 blue, 1
// green, 2 red); gray images return the same value for every channel.
func (r *raster) at(x, y, ch int) uint8 {
	if r.c == 1 {
		return r.pix[y*r.w+x]
	}
	return r.pix[(y*r.w+x)*3+2-ch]
}

// MinImageSide is the smallest width and height accepted: below it there is
// nothing to read, and the models need a few pixels to work on.
const MinImageSide = 4

// ErrImageTooLarge is returned for images above the configured pixel limit.
var ErrImageTooLarge = errors.New("image too large")

// ErrBadImage wraps every failure to read an image.
var ErrBadImage = errors.New("bad image")

// decodeImage decodes PNG, JPEG, TIFF, BMP, WebP or GIF bytes. The header is
// read first so that an image above maxPixels (0: no limit) is refused before
// its pixels are decoded. Transparent pixels are composed over white.
func decodeImage(data []byte, maxPixels int) (*raster, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadImage)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadImage, err)
	}
	if cfg.Width < MinImageSide || cfg.Height < MinImageSide {
		return nil, fmt.Errorf("%w: %s of %dx%d pixels is too small to hold text (at least %dx%d)", ErrBadImage, format, cfg.Width, cfg.Height, MinImageSide, MinImageSide)
	}
	if maxPixels > 0 && int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, fmt.Errorf("%w: %dx%d is more than %d pixels (raise max_pixels to accept it)", ErrImageTooLarge, cfg.Width, cfg.Height, maxPixels)
	}
	if format == "png" {
		if r, ok, err := decodePNG(data); ok {
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadImage, err)
			}
			return r, nil
		}
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadImage, format, err)
	}
	b := img.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, fmt.Errorf("%w: %s header says %dx%d, pixels are %dx%d", ErrBadImage, format, cfg.Width, cfg.Height, b.Dx(), b.Dy())
	}
	return toRaster(img), nil
}

// toRaster converts any image to a raster, with fast paths for the types the
// standard decoders return.
func toRaster(img image.Image) *raster {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	switch m := img.(type) {
	case *image.Gray:
		r := &raster{w: w, h: h, c: 1, pix: make([]uint8, w*h)}
		for y := range h {
			copy(r.pix[y*w:(y+1)*w], m.Pix[(y)*m.Stride:])
		}
		return r
	case *image.Gray16:
		r := &raster{w: w, h: h, c: 1, pix: make([]uint8, w*h)}
		for y := range h {
			row := m.Pix[y*m.Stride:]
			for x := range w {
				r.pix[y*w+x] = row[2*x]
			}
		}
		return r
	case *image.YCbCr:
		if isGrayYCbCr(m) {
			r := &raster{w: w, h: h, c: 1, pix: make([]uint8, w*h)}
			for y := range h {
				copy(r.pix[y*w:(y+1)*w], m.Y[y*m.YStride:])
			}
			return r
		}
		r := &raster{w: w, h: h, c: 3, pix: make([]uint8, w*h*3)}
		for y := range h {
			for x := range w {
				yi := m.YOffset(x+b.Min.X, y+b.Min.Y)
				ci := m.COffset(x+b.Min.X, y+b.Min.Y)
				cr, cg, cb := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				o := (y*w + x) * 3
				r.pix[o], r.pix[o+1], r.pix[o+2] = cr, cg, cb
			}
		}
		return r
	case *image.NRGBA:
		r := &raster{w: w, h: h, c: 3, pix: make([]uint8, w*h*3)}
		for y := range h {
			row := m.Pix[y*m.Stride:]
			for x := range w {
				s := row[4*x : 4*x+4 : 4*x+4]
				a := uint32(s[3])
				o := (y*w + x) * 3
				if a == 255 {
					r.pix[o], r.pix[o+1], r.pix[o+2] = s[0], s[1], s[2]
					continue
				}
				// Non-premultiplied colour over white: c*a + 255*(1-a).
				for ch := range 3 {
					r.pix[o+ch] = uint8((uint32(s[ch])*a + 255*(255-a) + 127) / 255)
				}
			}
		}
		return r
	case *image.RGBA:
		r := &raster{w: w, h: h, c: 3, pix: make([]uint8, w*h*3)}
		for y := range h {
			row := m.Pix[y*m.Stride:]
			for x := range w {
				s := row[4*x : 4*x+4 : 4*x+4]
				a := uint32(s[3])
				o := (y*w + x) * 3
				// Premultiplied colour over white: c + 255*(1-a).
				for ch := range 3 {
					r.pix[o+ch] = uint8(min(uint32(s[ch])+255-a, 255))
				}
			}
		}
		return r
	}
	// Everything else (16-bit colour, paletted, CMYK...) through the generic
	// colour model: slower, but exact.
	gray := true
	switch img.ColorModel() {
	case color.Gray16Model, color.GrayModel:
	default:
		gray = false
	}
	if gray {
		r := &raster{w: w, h: h, c: 1, pix: make([]uint8, w*h)}
		for y := range h {
			for x := range w {
				r.pix[y*w+x] = color.GrayModel.Convert(img.At(x+b.Min.X, y+b.Min.Y)).(color.Gray).Y
			}
		}
		return r
	}
	r := &raster{w: w, h: h, c: 3, pix: make([]uint8, w*h*3)}
	for y := range h {
		for x := range w {
			cr, cg, cb, ca := img.At(x+b.Min.X, y+b.Min.Y).RGBA() // premultiplied, 16 bit
			white := 0xffff - ca
			o := (y*w + x) * 3
			r.pix[o] = uint8((cr + white) >> 8)
			r.pix[o+1] = uint8((cg + white) >> 8)
			r.pix[o+2] = uint8((cb + white) >> 8)
		}
	}
	return r
}

// isGrayYCbCr reports whether a JPEG decoded as YCbCr has neutral chroma
// everywhere (a gray JPEG decodes as *image.Gray, but some encoders write gray
// pages as colour).
func isGrayYCbCr(m *image.YCbCr) bool {
	for _, c := range [][]uint8{m.Cb, m.Cr} {
		for _, v := range c {
			if v < 126 || v > 130 {
				return false
			}
		}
	}
	return true
}

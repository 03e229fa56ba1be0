package ocr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"

	"golang.org/x/image/tiff"
)

func TestDecodeKinds(t *testing.T) {
	const w, h = 40, 30
	gray := image.NewGray(image.Rect(0, 0, w, h))
	gray16 := image.NewGray16(image.Rect(0, 0, w, h))
	rgba := image.NewRGBA(image.Rect(0, 0, w, h))
	nrgba := image.NewNRGBA(image.Rect(0, 0, w, h))
	rgba64 := image.NewRGBA64(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.White, color.Black})
	for y := range h {
		for x := range w {
			gray.SetGray(x, y, color.Gray{Y: 100})
			gray16.SetGray16(x, y, color.Gray16{Y: 100 << 8})
			rgba.SetRGBA(x, y, color.RGBA{R: 200, G: 100, B: 50, A: 255})
			nrgba.SetNRGBA(x, y, color.NRGBA{R: 0, G: 0, B: 0, A: 0}) // transparent: white
			rgba64.SetRGBA64(x, y, color.RGBA64{R: 200 << 8, G: 100 << 8, B: 50 << 8, A: 0xffff})
			pal.SetColorIndex(x, y, 1)
		}
	}
	var tif, jpg bytes.Buffer
	if err := tiff.Encode(&tif, rgba, nil); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&jpg, gray, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		c       int
		b, g, r uint8
	}{
		{"gray png", encodePNG(t, gray), 1, 100, 100, 100},
		{"16-bit gray png", encodePNG(t, gray16), 1, 100, 100, 100},
		{"rgba png", encodePNG(t, rgba), 3, 50, 100, 200},
		{"transparent png", encodePNG(t, nrgba), 3, 255, 255, 255},
		{"16-bit rgba png", encodePNG(t, rgba64), 3, 50, 100, 200},
		{"paletted png", encodePNG(t, pal), 3, 0, 0, 0},
		{"tiff", tif.Bytes(), 3, 50, 100, 200},
		{"gray jpeg", jpg.Bytes(), 1, 100, 100, 100},
	} {
		r, err := decodeImage(tc.data, 0)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if r.w != w || r.h != h || r.c != tc.c {
			t.Errorf("%s: %dx%dx%d", tc.name, r.w, r.h, r.c)
			continue
		}
		b, g, rr := r.at(5, 5, 0), r.at(5, 5, 1), r.at(5, 5, 2)
		if d := int(b) - int(tc.b) + int(g) - int(tc.g) + int(rr) - int(tc.r); d < -3 || d > 3 {
			t.Errorf("%s: pixel B,G,R = %d,%d,%d, want %d,%d,%d", tc.name, b, g, rr, tc.b, tc.g, tc.r)
		}
	}
}

// pngHeader is a PNG signature and IHDR chunk claiming w x h, with no pixels.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 0 // 8-bit gray
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestDecodeBad(t *testing.T) {
	good := encodePNG(t, synthPage(64, 64))
	tiny := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	corrupt := bytes.Clone(good)
	for i := 60; i < len(corrupt)-20; i += 7 {
		corrupt[i] ^= 0x5a
	}
	for _, tc := range []struct {
		name string
		data []byte
		max  int
		want error
	}{
		{"empty", nil, 0, ErrBadImage},
		{"not an image", []byte("%PDF-1.4 hello"), 0, ErrBadImage},
		{"truncated", good[:len(good)/2], 0, ErrBadImage},
		{"corrupt", corrupt, 0, ErrBadImage},
		{"1x1", tiny, 0, ErrBadImage},
		{"zero size", pngHeader(0, 0), 0, ErrBadImage},
		// The header alone says it is too big: refused before any pixel is read.
		{"over the pixel limit", pngHeader(100000, 100000), 100_000_000, ErrImageTooLarge},
		{"over a small limit", good, 1000, ErrImageTooLarge},
	} {
		_, err := decodeImage(tc.data, tc.max)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func FuzzDecodeImage(f *testing.F) {
	f.Add(encodePNG(f, synthPage(16, 16)))
	var jpg bytes.Buffer
	_ = jpeg.Encode(&jpg, synthPage(16, 16), nil)
	f.Add(jpg.Bytes())
	var tif bytes.Buffer
	_ = tiff.Encode(&tif, synthPage(16, 16), nil)
	f.Add(tif.Bytes())
	f.Add(pngHeader(5, 5))
	pix := make([]uint8, 6*5*3)
	for i := range pix {
		pix[i] = uint8(i * 37)
	}
	for ft := range byte(5) {
		f.Add(rawPNG(f, pix, 6, 5, 3, func(int) byte { return ft }))
		f.Add(rawPNG(f, pix[:30], 6, 5, 1, func(y int) byte { return (ft + byte(y)) % 5 }))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeImage(data, 1<<20)
		if err != nil {
			return
		}
		if r.w < MinImageSide || r.h < MinImageSide || r.w*r.h > 1<<20 || len(r.pix) != r.w*r.h*r.c {
			t.Fatalf("decoded %dx%dx%d with %d samples", r.w, r.h, r.c, len(r.pix))
		}
		// Where the PNG fast path and image/png both read an image, they
		// read the same pixels.
		if fast, ok, err := decodePNG(data); ok && err == nil {
			if img, err := png.Decode(bytes.NewReader(data)); err == nil {
				if want := toRaster(img); want.c != fast.c || !bytes.Equal(want.pix, fast.pix) {
					t.Fatalf("fast PNG path and image/png disagree on a %dx%dx%d image", fast.w, fast.h, fast.c)
				}
			}
		}
	})
}

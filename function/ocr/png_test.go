package ocr

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// pngChunk appends one chunk with its checksum.
func pngChunk(out []byte, typ string, body []byte) []byte {
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	start := len(out)
	out = append(out, typ...)
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(out[start:]))
}

// rawPNG writes an 8-bit PNG of c channels (1 gray, 3 RGB) with the rows
// filtered by filter(y), straight from the specification: the reference the
// fast decoder is checked against, next to image/png.
func rawPNG(t testing.TB, pix []uint8, w, h, c int, filter func(y int) byte, extra ...string) []byte {
	t.Helper()
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr, uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = 8, map[int]byte{1: 0, 3: 2}[c]
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	stride := w * c
	at := func(y, i int) int { // byte i of row y, 0 outside the image
		if y < 0 || i < 0 {
			return 0
		}
		return int(pix[y*stride+i])
	}
	for y := range h {
		ft := filter(y)
		row := []byte{ft}
		for i := range stride {
			x, a, b, d := at(y, i), at(y, i-c), at(y-1, i), at(y-1, i-c)
			var pred int
			switch ft {
			case 1:
				pred = a
			case 2:
				pred = b
			case 3:
				pred = (a + b) / 2
			case 4:
				p := a + b - d
				pa, pb, pc := max(p-a, a-p), max(p-b, b-p), max(p-d, d-p)
				switch {
				case pa <= pb && pa <= pc:
					pred = a
				case pb <= pc:
					pred = b
				default:
					pred = d
				}
			}
			row = append(row, uint8(x-pred))
		}
		if _, err := zw.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	out := []byte("\x89PNG\r\n\x1a\n")
	out = pngChunk(out, "IHDR", ihdr)
	for _, e := range extra {
		out = pngChunk(out, e, []byte{0, 0})
	}
	// Two IDAT chunks: the decoder must join them.
	half := z.Len() / 2
	out = pngChunk(out, "IDAT", z.Bytes()[:half])
	out = pngChunk(out, "IDAT", z.Bytes()[half:])
	return pngChunk(out, "IEND", nil)
}

// stdlibRaster decodes with image/png and converts as the general path does.
func stdlibRaster(t testing.TB, data []byte) *raster {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("image/png: %v", err)
	}
	return toRaster(img)
}

func TestDecodePNGMatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	filters := map[string]func(int) byte{
		"none": func(int) byte { return 0 }, "sub": func(int) byte { return 1 }, "up": func(int) byte { return 2 },
		"average": func(int) byte { return 3 }, "paeth": func(int) byte { return 4 },
		"mixed": func(y int) byte { return byte((y * 7) % 5) },
	}
	// Smooth gradients with noise, so that predictors matter; and paper:
	// bands of one level or colour (white, black, grey) with a few specks of ink and
	// runs of every length between them, the flat runs unfiltering takes
	// eight pixels at a time.
	gradient := func(pix []uint8, w, h, c int) {
		for i := range pix {
			pix[i] = uint8(i%(w*c)*3 + i/(w*c)*5 + rng.IntN(40))
		}
	}
	paper := func(pix []uint8, w, h, c int) {
		specks := []int{5, 11, 23, 60}[rng.IntN(4)]
		for i := range pix {
			y := i / (w * c)
			pix[i] = []uint8{255, 255, 0, 200}[y/7%4] - uint8(i%c*13) // in colour tinted, as 255 242 229
			if rng.IntN(specks) == 0 {
				pix[i] = uint8(rng.IntN(256))
			}
		}
	}
	// Paper with vertical rules (table lines, a column's edge): below a
	// rule the filtered bytes are zero too, though the pixel is not paper.
	rules := func(pix []uint8, w, h, c int) {
		paper(pix, w, h, c)
		for i := range pix {
			if x := i % (w * c) / c; x%19 == 7 || x%31 == 30 {
				pix[i] = 30
			}
		}
	}
	for _, c := range []int{1, 3} {
		for _, size := range [][2]int{{1, 1}, {1, 4}, {2, 6}, {5, 3}, {37, 11}, {64, 64}, {9, 40}, {101, 57}, {203, 64}, {403, 33}} {
			w, h := size[0], size[1]
			for kind, fill := range map[string]func([]uint8, int, int, int){"gradient": gradient, "paper": paper, "rules": rules} {
				pix := make([]uint8, w*h*c)
				fill(pix, w, h, c)
				for name, f := range filters {
					name := kind + " " + name
					data := rawPNG(t, pix, w, h, c, f)
					got, ok, err := decodePNG(data)
					if !ok || err != nil {
						t.Fatalf("c=%d %dx%d %s: ok=%v err=%v", c, w, h, name, ok, err)
					}
					want := stdlibRaster(t, data)
					if got.w != want.w || got.h != want.h || got.c != want.c || !bytes.Equal(got.pix, want.pix) {
						t.Fatalf("c=%d %dx%d %s: pixels differ from image/png", c, w, h, name)
					}
				}
			}
		}
	}
	// What image/png's encoder writes (adaptive filters) decodes the same.
	page := synthPage(300, 200)
	data := encodePNG(t, page)
	got, ok, err := decodePNG(data)
	if !ok || err != nil {
		t.Fatalf("encoded page: ok=%v err=%v", ok, err)
	}
	if want := stdlibRaster(t, data); !bytes.Equal(got.pix, want.pix) || got.c != want.c {
		t.Fatal("encoded page: pixels differ from image/png")
	}
}

func TestDecodePNGLeavesOtherKinds(t *testing.T) {
	var b bytes.Buffer
	enc := func(img image.Image) []byte {
		b.Reset()
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(b.Bytes())
	}
	rgba := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	rgba.Set(1, 1, color.NRGBA{10, 20, 30, 128})
	gray16 := image.NewGray16(image.Rect(0, 0, 8, 8))
	pal := image.NewPaletted(image.Rect(0, 0, 8, 8), color.Palette{color.Black, color.White})
	interlaced := rawPNG(t, make([]uint8, 64), 8, 8, 1, func(int) byte { return 0 })
	interlaced[8+8+12] = 1 // IHDR's interlace byte, then its checksum again
	binary.BigEndian.PutUint32(interlaced[12+4+13:], crc32.ChecksumIEEE(interlaced[12:12+4+13]))
	for name, data := range map[string][]byte{
		"rgba": enc(rgba), "gray16": enc(gray16), "paletted": enc(pal), "interlaced": interlaced,
		"transparent colour": rawPNG(t, make([]uint8, 8*8*3), 8, 8, 3, func(int) byte { return 0 }, "tRNS"),
		"jpeg":               []byte("\xff\xd8\xff\xe0 not a png"),
	} {
		if _, ok, err := decodePNG(data); ok {
			t.Errorf("%s: taken by the fast path (err %v)", name, err)
		}
	}
}

func TestDecodePNGBad(t *testing.T) {
	pix := make([]uint8, 16*16)
	good := rawPNG(t, pix, 16, 16, 1, func(int) byte { return 4 })
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-20] ^= 0xff // inside the last IDAT
	badFilter := rawPNG(t, pix, 16, 16, 1, func(y int) byte { return map[bool]byte{true: 9}[y == 3] })
	short := rawPNG(t, pix[:16*8], 16, 8, 1, func(int) byte { return 0 })
	binary.BigEndian.PutUint32(short[20:], 16) // IHDR says 16 rows, the data holds 8
	binary.BigEndian.PutUint32(short[8+8+13:], crc32.ChecksumIEEE(short[12:12+4+13]))
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"checksum":      {badCRC, "checksum"},
		"filter type":   {badFilter, "filter type 9"},
		"short data":    {short, "ends early"},
		"truncated":     {good[:len(good)-30], "truncated"},
		"no IEND chunk": {good[:len(good)-12], "truncated"},
	} {
		_, ok, err := decodePNG(tc.data)
		if !ok || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ok=%v err=%v, want an error with %q", name, ok, err, tc.want)
		}
		// Through decodeImage it is a bad image, never a crash.
		if _, err := decodeImage(tc.data, 0); err == nil {
			t.Errorf("%s: decodeImage accepted it", name)
		}
	}
}

// TestPaethPair checks paethPair (assembly where there is one) against
// paethPairGo on rows of every width up to 70 and a scan's, with filtered
// bytes at random, runs of zeros under flat rows (the flat-run path, taken
// or just missed) and levels at the ends of the range.
func TestPaethPair(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	widths := []int{2480}
	for n := 1; n <= 70; n++ {
		widths = append(widths, n)
	}
	for _, n := range widths {
		for trial := range 20 {
			prev, r1, r2 := make([]byte, n), make([]byte, n), make([]byte, n)
			for _, row := range [][]byte{prev, r1, r2} {
				for i := range row {
					switch trial % 4 {
					case 0:
						row[i] = uint8(rng.IntN(256))
					case 1:
						row[i] = []uint8{0, 1, 255}[rng.IntN(3)]
					default:
						if rng.IntN(16) == 0 {
							row[i] = uint8(rng.IntN(256))
						}
					}
				}
			}
			if trial%4 >= 2 {
				// Paper: the row above flat at one level, stretches of it
				// broken by ink.
				level := uint8(rng.IntN(256))
				for i := range prev {
					prev[i] = level
					if rng.IntN(40) == 0 {
						prev[i] = uint8(rng.IntN(256))
					}
				}
			}
			want1, want2 := slices.Clone(r1), slices.Clone(r2)
			paethPairGo(prev, want1, want2)
			paethPair(prev, r1, r2)
			if !slices.Equal(r1, want1) || !slices.Equal(r2, want2) {
				t.Fatalf("width %d, trial %d: rows differ from paethPairGo\n%v\n%v\n%v\n%v", n, trial, r1, want1, r2, want2)
			}
		}
	}
}

package ocr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// decodePNG is the fast path for the PNGs scanners and renderers write:
// 8-bit gray or RGB, not interlaced. It inflates the whole image data in one
// pass (inflate, its own decoder) into the buffer that becomes the raster,
// undoes the row filters in place and drops the filter bytes, where
// image/png would go through compress/flate's window, allocate an image,
// filter row by row and leave a copy to toRaster. ok is false for any other
// kind of PNG (palette, alpha, 16 bits, interlaced, a transparent colour),
// which image/png then decodes. The pixels are the same as image/png's;
// TestDecodePNGMatchesStdlib and FuzzDecodeImage check it.
func decodePNG(data []byte) (r *raster, ok bool, err error) {
	const sig = "\x89PNG\r\n\x1a\n"
	if !bytes.HasPrefix(data, []byte(sig)) {
		return nil, false, nil
	}
	p := data[len(sig):]
	var (
		w, h, c int
		idat    [][]byte
		seenHdr bool
	)
	for {
		if len(p) < 12 {
			return nil, true, errors.New("png: truncated chunk")
		}
		n := binary.BigEndian.Uint32(p)
		if uint64(n) > uint64(len(p)-12) {
			return nil, true, errors.New("png: truncated chunk")
		}
		typ, body := string(p[4:8]), p[8:8+n]
		if crc32.ChecksumIEEE(p[4:8+n]) != binary.BigEndian.Uint32(p[8+n:]) {
			return nil, true, fmt.Errorf("png: bad checksum in %q chunk", typ)
		}
		p = p[12+n:]
		switch typ {
		case "IHDR":
			if n != 13 || seenHdr {
				return nil, true, errors.New("png: bad IHDR chunk")
			}
			seenHdr = true
			w, h = int(binary.BigEndian.Uint32(body)), int(binary.BigEndian.Uint32(body[4:]))
			depth, ctype, comp, filt, inter := body[8], body[9], body[10], body[11], body[12]
			if depth != 8 || (ctype != 0 && ctype != 2) || comp != 0 || filt != 0 || inter != 0 {
				return nil, false, nil
			}
			c = 1
			if ctype == 2 {
				c = 3
			}
			if w <= 0 || h <= 0 || w > 1<<24 || h > 1<<24 {
				return nil, false, nil
			}
		case "tRNS", "PLTE":
			return nil, false, nil // transparency to compose, or a palette: image/png's job
		case "IDAT":
			if !seenHdr {
				return nil, true, errors.New("png: IDAT before IHDR")
			}
			idat = append(idat, body)
		case "IEND":
			if !seenHdr || len(idat) == 0 {
				return nil, true, errors.New("png: no image data")
			}
			z := idat[0]
			if len(idat) > 1 {
				z = bytes.Join(idat, nil)
			}
			r, err := inflateRows(z, w, h, c)
			return r, true, err
		}
	}
}

// inflateRows inflates h filtered rows of w pixels of c bytes from the
// zlib stream z and unfilters them into a raster (channels R, G, B for
// colour, as the PNG holds them).
func inflateRows(z []byte, w, h, c int) (*raster, error) {
	// A zlib stream: a two-byte header, deflate data, an Adler-32 of the
	// inflated bytes. The chunk CRCs already cover every compressed byte, so
	// the deflate data is read without zlib's second checksum, which costs
	// about a sixth of the decoding time.
	if len(z) < 2 {
		return nil, errors.New("png: image data ends early")
	}
	if z[0]&0x0f != 8 || z[0]>>4 > 7 || z[1]&0x20 != 0 || (uint(z[0])<<8|uint(z[1]))%31 != 0 {
		return nil, errors.New("png: image data is not a zlib stream")
	}
	stride := w*c + 1
	buf := bytePool.get(stride * h) // inflate writes every byte or fails
	if err := inflate(z[2:], buf); err != nil {
		bytePool.put(buf)
		return nil, fmt.Errorf("png: %w", err)
	}
	// Each row, once unfiltered, moves to its place in the raster without
	// its filter byte, while it is still in the cache: row y goes from
	// y*stride+1 to y*n, over bytes of rows already moved, never past data
	// still to be read.
	n := w * c
	place := func(y int) []byte {
		dst := buf[y*n : (y+1)*n]
		copy(dst, buf[y*stride+1:(y+1)*stride])
		return dst
	}
	var prev []byte // the previous unfiltered row, in place; nil above the first
	for y := 0; y < h; y++ {
		row := buf[y*stride : (y+1)*stride]
		cur := row[1:]
		// Two Paeth or two Average rows in a row (most of a scan) unfilter
		// together, the second one pixel behind the first: two independent
		// chains of work, where one row alone waits on each pixel's left
		// neighbour.
		if (row[0] == 3 || row[0] == 4) && prev != nil && c == 1 && y+1 < h && buf[(y+1)*stride] == row[0] {
			next := buf[(y+1)*stride+1 : (y+2)*stride]
			if row[0] == 4 {
				paethPair(prev, cur, next)
			} else {
				averagePair(prev, cur, next)
			}
			place(y)
			prev = place(y + 1)
			y++
			continue
		}
		if err := unfilter(row[0], cur, prev, c); err != nil {
			bytePool.put(buf)
			return nil, err
		}
		prev = place(y)
	}
	pix := buf[:w*h*c] // the whole buffer stays its capacity, for the pool
	return &raster{w: w, h: h, c: c, pix: pix}, nil
}

// unfilter undoes one row's PNG filter in place; prev is the unfiltered row
// above (nil for the first row, which filters against zeros); bpp is the
// bytes per pixel.
func unfilter(ft byte, cur, prev []byte, bpp int) error {
	switch ft {
	case 0: // none
	case 1: // sub
		for i := bpp; i < len(cur); i++ {
			cur[i] += cur[i-bpp]
		}
	case 2: // up
		if prev != nil {
			addRow(cur, prev[:len(cur)])
		}
	case 3: // average
		if prev == nil {
			for i := bpp; i < len(cur); i++ {
				cur[i] += cur[i-bpp] / 2
			}
			break
		}
		prev = prev[:len(cur)]
		for i := range bpp {
			cur[i] += prev[i] / 2
		}
		for i := bpp; i < len(cur); i++ {
			cur[i] += uint8((int(cur[i-bpp]) + int(prev[i])) / 2)
		}
	case 4: // Paeth
		if prev == nil {
			// Above is zero: the predictor is always the left neighbour.
			for i := bpp; i < len(cur); i++ {
				cur[i] += cur[i-bpp]
			}
			break
		}
		paeth(cur, prev, bpp)
	default:
		return fmt.Errorf("png: bad filter type %d", ft)
	}
	return nil
}

// paeth unfilters a Paeth-filtered row of bpp bytes per pixel below prev.
// Each channel is a chain of dependent bytes (every pixel's predictor needs
// its left neighbour); the three channels of colour run side by side, and
// take flat runs of paper eight pixels at a time as paethGray does.
func paeth(cur, prev []byte, bpp int) {
	prev = prev[:len(cur)]
	if bpp == 3 && len(cur)%3 == 0 {
		// Pixel 0: left and upper left are zero, the predictor is above.
		cur[0] += prev[0]
		cur[1] += prev[1]
		cur[2] += prev[2]
		a0, a1, a2 := int(cur[0]), int(cur[1]), int(cur[2])
		var run [3]uint64 // eight pixels of colour pat, as three words
		pat := -1
		le := binary.LittleEndian
		for i := 3; i < len(cur); {
			// Eight pixels with nothing filtered under eight of the left
			// pixel's colour: left and above are equal in every channel,
			// so each pixel is the left one.
			if i+24 <= len(cur) && le.Uint64(cur[i:])|le.Uint64(cur[i+8:])|le.Uint64(cur[i+16:]) == 0 {
				if px := a0 | a1<<8 | a2<<16; px != pat {
					pat = px
					var b [24]byte
					for k := 0; k < 24; k += 3 {
						b[k], b[k+1], b[k+2] = byte(a0), byte(a1), byte(a2)
					}
					run = [3]uint64{le.Uint64(b[:]), le.Uint64(b[8:]), le.Uint64(b[16:])}
				}
				if le.Uint64(prev[i:]) == run[0] && le.Uint64(prev[i+8:]) == run[1] && le.Uint64(prev[i+16:]) == run[2] {
					le.PutUint64(cur[i:], run[0])
					le.PutUint64(cur[i+8:], run[1])
					le.PutUint64(cur[i+16:], run[2])
					i += 24
					continue
				}
			}
			for end := min(i+24, len(cur)); i < end; i += 3 {
				a0 = paethAdd(a0, int(prev[i]), int(prev[i-3]), cur[i])
				a1 = paethAdd(a1, int(prev[i+1]), int(prev[i-2]), cur[i+1])
				a2 = paethAdd(a2, int(prev[i+2]), int(prev[i-1]), cur[i+2])
				cur[i], cur[i+1], cur[i+2] = uint8(a0), uint8(a1), uint8(a2)
			}
		}
		return
	}
	if bpp == 1 {
		paethGray(cur, prev)
		return
	}
	for k := range bpp {
		a, c := 0, 0
		for i := k; i < len(cur); i += bpp {
			b := int(prev[i])
			a = paethAdd(a, b, c, cur[i])
			cur[i] = uint8(a)
			c = b
		}
	}
}

// flat8 is v in each of eight bytes.
func flat8(v int) uint64 { return uint64(v) * 0x0101010101010101 }

// paethGray unfilters a Paeth row of one byte per pixel. Where the left
// pixel and the eight above have one value and the eight filtered bytes are
// zero (the paper of a clean page), the eight pixels take that value at
// once: with left and above equal, the predictor is left whatever the upper
// left is. Elsewhere it goes pixel by pixel, eight at a time.
func paethGray(cur, prev []byte) {
	a, c := 0, 0
	for i := 0; i < len(cur); {
		if i+8 <= len(cur) && binary.LittleEndian.Uint64(cur[i:]) == 0 && binary.LittleEndian.Uint64(prev[i:]) == flat8(a) {
			binary.LittleEndian.PutUint64(cur[i:], flat8(a))
			c = a // the upper left of the next pixel
			i += 8
			continue
		}
		for end := min(i+8, len(cur)); i < end; i++ {
			b := int(prev[i])
			a = paethAdd(a, b, c, cur[i])
			cur[i] = uint8(a)
			c = b
		}
	}
}

// paethPairGo is paethPair in Go: the whole of it where there is no
// assembly version, and the reference the assembly is tested against.
func paethPairGo(prev, r1, r2 []byte) {
	n := len(r1)
	prev, r2 = prev[:n], r2[:n]
	// Pixel 0 of r1: left and upper left are zero, the predictor is above.
	r1[0] += prev[0]
	a1, c1 := int(r1[0]), int(prev[0])
	a2, c2 := 0, 0
	for x := 1; x < n; {
		// A flat run, as in paethGray, for both rows: the left pixels and
		// the pixels above of the eight of r1 from x and of r2 from x-1 all
		// have one value, and nothing is filtered.
		if x+8 <= n && a1 == a2 && binary.LittleEndian.Uint64(r1[x:]) == 0 &&
			binary.LittleEndian.Uint64(r2[x-1:]) == 0 && binary.LittleEndian.Uint64(prev[x:]) == flat8(a1) {
			binary.LittleEndian.PutUint64(r1[x:], flat8(a1))
			binary.LittleEndian.PutUint64(r2[x-1:], flat8(a1))
			c1, c2 = a1, a1 // the upper lefts of the next pixels
			x += 8
			continue
		}
		for end := min(x+8, n); x < end; x++ {
			b1, b2 := int(prev[x]), int(r1[x-1])
			a1 = paethAdd(a1, b1, c1, r1[x])
			a2 = paethAdd(a2, b2, c2, r2[x-1])
			r1[x], r2[x-1] = uint8(a1), uint8(a2)
			c1, c2 = b1, b2
		}
	}
	r2[n-1] = uint8(paethAdd(a2, int(r1[n-1]), c2, r2[n-1]))
}

// averagePair unfilters two consecutive Average rows of one byte per
// pixel, r1 below prev and r2 below r1, the second one pixel behind the
// first as in paethPair.
func averagePair(prev, r1, r2 []byte) {
	n := len(r1)
	prev, r2 = prev[:n], r2[:n]
	// The left of pixel 0 is zero.
	a1 := (int(r1[0]) + int(prev[0])>>1) & 0xff
	r1[0] = uint8(a1)
	a2 := 0
	for x := 1; x < n; x++ {
		a1 = (int(r1[x]) + (a1+int(prev[x]))>>1) & 0xff
		a2 = (int(r2[x-1]) + (a2+int(r1[x-1]))>>1) & 0xff
		r1[x], r2[x-1] = uint8(a1), uint8(a2)
	}
	r2[n-1] = uint8(int(r2[n-1]) + (a2+int(r1[n-1]))>>1)
}

// paethAdd adds PNG's Paeth predictor of left a, above b and upper left c
// to the filtered byte x. The predictor is chosen with conditional moves:
// on scanned pages the choice is nearly random, and a mispredicted branch
// per byte would be most of the cost.
func paethAdd(a, b, c int, x byte) int {
	pa, pb := b-c, a-c // p - a and p - b with p = a + b - c
	pc := max(pa+pb, -pa-pb)
	pa, pb = max(pa, -pa), max(pb, -pb)
	if pb <= pc {
		c = b
	}
	if pa <= min(pb, pc) {
		c = a
	}
	return (c + int(x)) & 0xff
}

// addRow adds prev to cur byte by byte (the Up filter), eight bytes at a
// time: the low seven bits of each byte add without carrying into the
// next byte, and the top bit is their carry xor the top bits.
func addRow(cur, prev []byte) {
	const hi = 0x8080808080808080
	i := 0
	for ; i+8 <= len(cur); i += 8 {
		a, b := binary.LittleEndian.Uint64(cur[i:]), binary.LittleEndian.Uint64(prev[i:])
		binary.LittleEndian.PutUint64(cur[i:], (a&^hi)+(b&^hi)^(a^b)&hi)
	}
	for ; i < len(cur); i++ {
		cur[i] += prev[i]
	}
}

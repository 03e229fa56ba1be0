package ocr

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// decodePNG is the fast path for the PNGs scanners and renderers write:
// 8-bit gray or RGB, not interlaced. It inflates the whole image data in one
// read into the buffer that becomes the raster, undoes the row filters in
// place and drops the filter bytes, where image/png would allocate an image,
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
		idat    []io.Reader
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
			idat = append(idat, bytes.NewReader(body))
		case "IEND":
			if !seenHdr || len(idat) == 0 {
				return nil, true, errors.New("png: no image data")
			}
			r, err := inflateRows(io.MultiReader(idat...), w, h, c)
			return r, true, err
		}
	}
}

// inflateRows inflates h filtered rows of w pixels of c bytes and unfilters
// them into a raster (channels B, G, R for colour, as toRaster stores them).
func inflateRows(src io.Reader, w, h, c int) (*raster, error) {
	// A zlib stream: a two-byte header, deflate data, an Adler-32 of the
	// inflated bytes. The chunk CRCs already cover every compressed byte, so
	// the deflate data is read without zlib's second checksum, which costs
	// about a sixth of the decoding time.
	var hdr [2]byte
	if _, err := io.ReadFull(src, hdr[:]); err != nil {
		return nil, errors.New("png: image data ends early")
	}
	if hdr[0]&0x0f != 8 || hdr[0]>>4 > 7 || hdr[1]&0x20 != 0 || (uint(hdr[0])<<8|uint(hdr[1]))%31 != 0 {
		return nil, errors.New("png: image data is not a zlib stream")
	}
	zr := flate.NewReader(src)
	defer zr.Close()
	stride := w*c + 1
	buf := make([]byte, stride*h)
	if _, err := io.ReadFull(zr, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, errors.New("png: image data ends early")
		}
		return nil, fmt.Errorf("png: %v", err)
	}
	// The deflate data must end with the last row.
	switch n, err := zr.Read(make([]byte, 1)); {
	case n > 0:
		return nil, errors.New("png: more image data than pixels")
	case err != io.EOF:
		return nil, fmt.Errorf("png: %v", err)
	}
	var prev []byte // the previous unfiltered row; nil above the first
	for y := range h {
		row := buf[y*stride : (y+1)*stride]
		cur := row[1:]
		if err := unfilter(row[0], cur, prev, c); err != nil {
			return nil, err
		}
		prev = cur
	}
	// Drop the filter bytes: row y moves from y*stride+1 to y*w*c, never
	// past data still to be read, so the rows compact in place.
	for y := range h {
		copy(buf[y*w*c:(y+1)*w*c], buf[y*stride+1:(y+1)*stride])
	}
	pix := buf[: w*h*c : w*h*c]
	if c == 3 {
		for i := 0; i+2 < len(pix); i += 3 {
			pix[i], pix[i+2] = pix[i+2], pix[i]
		}
	}
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
			for i, b := range prev[:len(cur)] {
				cur[i] += b
			}
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
		for k := range bpp {
			paeth(cur, prev[:len(cur)], k, bpp)
		}
	default:
		return fmt.Errorf("png: bad filter type %d", ft)
	}
	return nil
}

// paeth unfilters channel k of a Paeth-filtered row. The predictor is picked
// without branches on the data (the choice is nearly random on scanned
// pages, where a mispredicted branch per byte is most of the cost).
func paeth(cur, prev []byte, k, bpp int) {
	a, c := 0, 0
	for i := k; i < len(cur); i += bpp {
		b := int(prev[i])
		pa := b - c // |p - a| with p = a + b - c
		pb := a - c // |p - b|
		pc := pa + pb
		pa, pb, pc = iabs(pa), iabs(pb), iabs(pc)
		pred := c
		if pb <= pc {
			pred = b
		}
		if pa <= pb && pa <= pc {
			pred = a
		}
		a = (pred + int(cur[i])) & 0xff
		cur[i] = uint8(a)
		c = b
	}
}

func iabs(x int) int {
	m := x >> 63
	return (x ^ m) - m
}

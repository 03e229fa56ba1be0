package ocr

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func deflate(tb testing.TB, data []byte, level int) []byte {
	tb.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// inflateSamples are inputs that exercise every kind of block: stored
// (level 0), fixed and dynamic codes, long and overlapping matches, and
// literal-heavy noise.
func inflateSamples() map[string][]byte {
	rng := rand.New(rand.NewPCG(7, 8))
	noise := make([]byte, 200_000)
	for i := range noise {
		noise[i] = byte(rng.IntN(256))
	}
	text := bytes.Repeat([]byte("Ce n'est qu'un début, continuons le combat. "), 3000)
	runs := make([]byte, 300_000)
	for i := range runs {
		if (i/977)%3 == 0 {
			runs[i] = 255
		} else {
			runs[i] = byte(i % 7)
		}
	}
	page := synthPage(300, 400).Pix
	skewed := make([]byte, 100_000) // few symbols: long and short codes
	for i := range skewed {
		skewed[i] = byte(min(rng.ExpFloat64()*3, 255))
	}
	// Repeats of periods 2 to 7: matches closer than eight bytes.
	var periodic []byte
	for len(periodic) < 200_000 {
		p := 2 + rng.IntN(6)
		unit := make([]byte, p)
		for i := range unit {
			unit[i] = byte(rng.IntN(256))
		}
		for range 1 + rng.IntN(80) {
			periodic = append(periodic, unit...)
		}
	}
	return map[string][]byte{"empty": {}, "one": {42}, "noise": noise, "text": text, "runs": runs, "page": page, "skewed": skewed, "periodic": periodic}
}

func TestInflateMatchesCompressFlate(t *testing.T) {
	for name, data := range inflateSamples() {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			comp := deflate(t, data, level)
			out := make([]byte, len(data))
			if err := inflate(comp, out); err != nil {
				t.Fatalf("%s, level %d: %v", name, level, err)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("%s, level %d: inflated bytes differ", name, level)
			}
		}
	}
}

// bitWriter writes a deflate bit stream: fields from the low bit up,
// Huffman codes from their first (highest) bit.
type bitWriter struct {
	out  []byte
	nbit int
}

func (w *bitWriter) bits(v uint32, n int) {
	for i := range n {
		if w.nbit%8 == 0 {
			w.out = append(w.out, 0)
		}
		w.out[len(w.out)-1] |= byte(v>>i&1) << (w.nbit % 8)
		w.nbit++
	}
}

func (w *bitWriter) code(c uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		w.bits(c>>i&1, 1)
	}
}

func (w *bitWriter) bytes() []byte { return w.out }

func TestInflateErrors(t *testing.T) {
	data := inflateSamples()["text"]
	comp := deflate(t, data, flate.DefaultCompression)
	cases := []struct {
		name    string
		in      []byte
		outLen  int
		wantErr error
	}{
		{"truncated", comp[:len(comp)/2], len(data), errInflateShort},
		{"empty input", nil, len(data), errInflateShort},
		{"output too small", comp, len(data) - 1, errInflateLong},
		{"output too large", comp, len(data) + 1, errInflateShort},
		{"reserved block type", []byte{0x07, 0, 0, 0}, 10, errInflateCorrupt},
		{"stored length check", []byte{0x01, 0x05, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5}, 5, errInflateCorrupt},
		// A fixed block whose first symbol is a match reaching before the start.
		{"distance too far", []byte{0x03, 0x02}, 10, errInflateCorrupt},
	}
	// The same faults in a fixed block with room around them, where the
	// decoding runs at full speed: after one literal, a match two bytes
	// back, a distance symbol of 30, a length symbol of 286.
	for _, c := range []struct {
		name string
		tail func(b *bitWriter)
	}{
		{"fast: distance too far", func(b *bitWriter) { b.code(1, 7); b.code(1, 5) }},
		{"fast: distance symbol 30", func(b *bitWriter) { b.code(1, 7); b.code(30, 5) }},
		{"fast: length symbol 286", func(b *bitWriter) { b.code(0xc0+6, 8) }},
	} {
		var b bitWriter
		b.bits(1, 1) // final
		b.bits(1, 2) // fixed codes
		b.code(0x30+'a', 8)
		c.tail(&b)
		in := append(b.bytes(), make([]byte, 16)...)
		cases = append(cases, struct {
			name    string
			in      []byte
			outLen  int
			wantErr error
		}{c.name, in, 1000, errInflateCorrupt})
	}
	for _, c := range cases {
		err := inflate(c.in, make([]byte, c.outLen))
		if !errors.Is(err, c.wantErr) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.wantErr)
		}
	}
}

// inflateAgrees is FuzzInflate's check: whatever compress/flate reads
// completely, inflate reads to the same bytes; what it refuses, inflate
// refuses too; and inflate never panics or hangs.
func inflateAgrees(t *testing.T, in []byte, limit int) {
	t.Helper()
	want, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(in)), int64(limit)))
	if len(want) == limit {
		_ = inflate(in, make([]byte, limit))
		return
	}
	if err != nil {
		if inflate(in, make([]byte, limit)) == nil {
			t.Fatalf("compress/flate refuses the stream (%v), inflate reads it", err)
		}
		return
	}
	out := make([]byte, len(want))
	if err := inflate(in, out); err != nil {
		t.Fatalf("compress/flate reads %d bytes, inflate fails: %v", len(want), err)
	}
	if !bytes.Equal(out, want) {
		t.Fatal("inflate and compress/flate disagree")
	}
}

// TestInflateCorruptStreams damages long streams deep inside, where the
// decoding runs at full speed, and checks inflateAgrees: every kind of
// bad code and distance is met there, not only near the start.
func TestInflateCorruptStreams(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for name, data := range inflateSamples() {
		if len(data) < 10_000 {
			continue
		}
		for _, level := range []int{flate.BestSpeed, flate.DefaultCompression, flate.HuffmanOnly} {
			comp := deflate(t, data, level)
			for range 40 {
				bad := bytes.Clone(comp)
				for range 1 + rng.IntN(3) {
					bad[rng.IntN(len(bad))] ^= byte(1 + rng.IntN(255))
				}
				t.Run(name, func(t *testing.T) { inflateAgrees(t, bad, 1<<20) })
			}
		}
	}
}

// FuzzInflate checks inflate against compress/flate: whatever the standard
// decoder reads completely, inflate reads to the same bytes; on anything
// else it returns an error or bytes, never a panic or a hang.
func FuzzInflate(f *testing.F) {
	for _, data := range inflateSamples() {
		if len(data) > 1000 {
			data = data[:1000]
		}
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.BestCompression, flate.HuffmanOnly} {
			f.Add(deflate(f, data, level))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) { inflateAgrees(t, in, 1<<16) })
}

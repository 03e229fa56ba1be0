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
	return map[string][]byte{"empty": {}, "one": {42}, "noise": noise, "text": text, "runs": runs, "page": page, "skewed": skewed}
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
	for _, c := range cases {
		err := inflate(c.in, make([]byte, c.outLen))
		if !errors.Is(err, c.wantErr) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.wantErr)
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
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 1 << 16
		want, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(in)), limit))
		if err != nil || len(want) == limit {
			_ = inflate(in, make([]byte, 1000))
			return
		}
		out := make([]byte, len(want))
		if err := inflate(in, out); err != nil {
			t.Fatalf("compress/flate reads %d bytes, inflate fails: %v", len(want), err)
		}
		if !bytes.Equal(out, want) {
			t.Fatal("inflate and compress/flate disagree")
		}
	})
}

package ocr

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkRecModel runs each recognizer alone on the same line, 800 x 48
// pixels at PP-OCRv4's height (536 x 32 at pero-latin's, integer and float), as one run of one
// thread: the per-line model cost without pre- or post-processing.
func BenchmarkRecModel(b *testing.B) {
	a := needAssets(b)
	if err := InitRuntime(a.library); err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct {
		name, file string
		h          int
	}{{"pero-latin", DefaultRecognizeModel, 32}, {"pero-latin-float", latinFloat, 32}, {"pp-ocrv4", "ch_PP-OCRv4_rec_infer.onnx", 48}} {
		s, err := newSession(filepath.Join(a.modelDir, m.file), sessionOptions{threads: 1})
		if err != nil {
			b.Fatal(err)
		}
		for _, vary := range []bool{false, true} {
			b.Run(m.name+"/"+map[bool]string{false: "fixed", true: "varying"}[vary], func(b *testing.B) {
				i := 0
				var d time.Duration
				for b.Loop() {
					w := 800
					if vary {
						w = 640 + 8*(i%40)
					}
					i++
					w = (w*m.h/48 + 7) &^ 7
					in := make([]float32, 3*m.h*w)
					t0 := time.Now()
					if _, _, err := s.run(in, []int64{1, 3, int64(m.h), int64(w)}); err != nil {
						b.Fatal(err)
					}
					d += time.Since(t0)
				}
				b.ReportMetric(d.Seconds()*1000/float64(b.N), "ms/run")
			})
		}
		s.close()
	}
}

package ocr

import (
	"path/filepath"
	"testing"
	"time"
)

func BenchmarkRecModel(b *testing.B) {
	a := needAssets(b)
	if err := InitRuntime(a.library); err != nil {
		b.Fatal(err)
	}
	s, err := newSession(filepath.Join(a.modelDir, "ch_PP-OCRv4_rec_infer.onnx"), sessionOptions{threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	for _, vary := range []bool{false, true} {
		b.Run(map[bool]string{false: "fixed", true: "varying"}[vary], func(b *testing.B) {
			i := 0
			var d time.Duration
			for b.Loop() {
				w := 800
				if vary {
					w = 640 + 8*(i%40)
				}
				i++
				in := make([]float32, 3*48*w)
				t0 := time.Now()
				if _, _, err := s.run(in, []int64{1, 3, 48, int64(w)}); err != nil {
					b.Fatal(err)
				}
				d += time.Since(t0)
			}
			b.ReportMetric(d.Seconds()*1000/float64(b.N), "ms/run")
		})
	}
}

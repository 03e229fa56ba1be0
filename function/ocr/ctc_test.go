package ocr

import "testing"

func TestCTCGreedy(t *testing.T) {
	const C = 4 // blank, a, b, " "
	dict := []string{"a", "b", " "}
	steps := []int{0, 1, 1, 0, 1, 2, 2, 3, 0, 2}
	probs := make([]float32, len(steps)*C)
	for t, c := range steps {
		for k := range C {
			probs[t*C+k] = 0.1
		}
		probs[t*C+c] = 0.7
	}
	probs[1*C+1] = 0.9 // first step of the first "a" is more certain
	chars := ctcGreedy(probs, len(steps), C)
	text, score := ctcText(chars, dict)
	if text != "aab b" {
		t.Errorf("text %q, want %q", text, "aab b")
	}
	if want := (0.9 + 0.7*4) / 5; !near(score, want, 1e-6) {
		t.Errorf("score %v, want %v", score, want)
	}
	if chars[0].t0 != 1 || chars[0].t1 != 2 || chars[2].t0 != 5 || chars[2].t1 != 6 {
		t.Errorf("time spans %+v", chars)
	}
	if text, score := ctcText(nil, dict); text != "" || score != 0 {
		t.Errorf("empty: %q %v", text, score)
	}
}

func TestArgmax(t *testing.T) {
	for _, tc := range []struct {
		row  []float32
		want int
	}{
		{[]float32{0.9, 0.05, 0.05}, 0},
		{[]float32{0.2, 0.3, 0.45, 0.05}, 2},
		{[]float32{0.1, 0.6, 0.3}, 1},
		{[]float32{0.3, 0.3, 0.4}, 2},
	} {
		if got, _ := argmax(tc.row); got != tc.want {
			t.Errorf("argmax(%v) = %d, want %d", tc.row, got, tc.want)
		}
	}
}

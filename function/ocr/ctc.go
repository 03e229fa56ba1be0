package ocr

import (
	"strings"
)

// ctcChar is one decoded character and the time steps it spans.
type ctcChar struct {
	idx    int // class index (1-based: 0 is the blank)
	t0, t1 int // first and last time step
	prob   float32
}

// ctcGreedy decodes one sequence of T x C probabilities: argmax per step,
// repeats collapsed, blanks (class 0) dropped.
func ctcGreedy(probs []float32, T, C int) []ctcChar {
	var out []ctcChar
	prev := -1
	for t := range T {
		row := probs[t*C : (t+1)*C : (t+1)*C]
		best, bp := argmax(row)
		switch {
		case best == prev && best != 0:
			out[len(out)-1].t1 = t
		case best != 0:
			out = append(out, ctcChar{idx: best, t0: t, t1: t, prob: bp})
		}
		prev = best
	}
	return out
}

// ctcText maps decoded classes to text with dict (dict[i-1] for class i) and
// returns the mean probability of the kept steps as the score.
func ctcText(chars []ctcChar, dict []string) (string, float64) {
	if len(chars) == 0 {
		return "", 0
	}
	var b strings.Builder
	var sum float64
	for _, c := range chars {
		if c.idx-1 < len(dict) {
			b.WriteString(dict[c.idx-1])
		}
		sum += float64(c.prob)
	}
	return b.String(), sum / float64(len(chars))
}

// argmax returns the index and value of the largest probability in row. The
// rows are softmax outputs, so a value above one half is the maximum and the
// scan stops there: most steps are a confident blank or character.
func argmax(row []float32) (int, float32) {
	best, bp := 0, row[0]
	if bp > 0.5 {
		return 0, bp
	}
	for c := 1; c < len(row); c++ {
		if v := row[c]; v > bp {
			best, bp = c, v
			if v > 0.5 {
				break
			}
		}
	}
	return best, bp
}

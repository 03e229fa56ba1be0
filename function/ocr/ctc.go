package ocr

import (
	"math"
	"slices"
	"strings"
	"unicode/utf8"
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

// ctcBeam decodes CTC output with a prefix beam search weighted by a
// character language model (shallow fusion): every character a prefix
// gains multiplies its probability by P_lm(char | prefix)^Weight times
// e^Bonus, the bonus offsetting the language model's cost per character.
// Blank-ended and character-ended probabilities are kept apart, so that a
// character repeated across time steps counts once and a doubled letter
// needs a blank between. Classes below minProb at a step are not tried.
type ctcBeam struct {
	lm    *charLM // its probabilities raised to the weight
	runes []rune  // per class, folded for the language model; class 0 (blank) unused
	bonus float64 // e^Bonus
	width int
}

// minProb is the probability below which a class is not tried at a step,
// and a prefix less than beamCut times as probable as the best is dropped.
// With the language model's weight w, a class at p beats one at q only where
// the model favours it by (q/p)^(1/w): at the default 0.25, a factor of
// 10^8 for a class at 0.01 against one at 0.99, which a character n-gram
// model does not give. Tighter values read the validation lines the same and
// take 60% of the time (BenchmarkCTCLine).
const (
	minProb = 0.01
	beamCut = 1e-3
)

// newCTCBeam maps the dictionary's characters to the language model's.
// Entries of more than one character get the unknown character's score.
func newCTCBeam(lm *charLM, dict []string, bonus float64, width int) *ctcBeam {
	runes := make([]rune, len(dict)+1)
	for i, s := range dict {
		r, n := utf8.DecodeRuneInString(s)
		if n != len(s) || n == 0 {
			r = -1
		}
		runes[i+1] = lmRune(r)
	}
	return &ctcBeam{lm: lm, runes: runes, bonus: math.Exp(bonus), width: max(width, 1)}
}

// beamNode is a prefix in the tree of prefixes the search has met.
type beamNode struct {
	parent      int32
	class       int32
	depth       int32
	firstChild  int32 // -1: none; children are linked through nextSibling
	nextSibling int32
	factor      float64 // what the node's character multiplies by (0: not yet known)
}

type beamEntry struct {
	node    int32
	pb, pnb float64 // probability of the prefix ending in a blank, in a character
}

// decode returns the most probable class sequence of one T x C output.
func (b *ctcBeam) decode(probs []float32, T, C int) []int {
	nodes := make([]beamNode, 1, 4*T)
	nodes[0] = beamNode{parent: -1, firstChild: -1, nextSibling: -1, factor: 1}
	child := func(n int32, c int) int32 {
		for k := nodes[n].firstChild; k >= 0; k = nodes[k].nextSibling {
			if int(nodes[k].class) == c {
				return k
			}
		}
		id := int32(len(nodes))
		nodes = append(nodes, beamNode{parent: n, class: int32(c), depth: nodes[n].depth + 1, firstChild: -1, nextSibling: nodes[n].firstChild})
		nodes[n].firstChild = id
		return id
	}
	var ctxBuf [16]rune
	factor := func(n int32) float64 {
		if f := nodes[n].factor; f != 0 {
			return f
		}
		// The context: up to order-1 characters before the node's own, nearest
		// last; a line starts at a word boundary.
		k := len(ctxBuf)
		for p := nodes[n].parent; p > 0 && len(ctxBuf)-k < b.lm.order-1; p = nodes[p].parent {
			k--
			ctxBuf[k] = b.runes[nodes[p].class]
		}
		if len(ctxBuf)-k < b.lm.order-1 {
			k--
			ctxBuf[k] = ' '
		}
		f := float64(b.lm.prob(ctxBuf[k:], b.runes[nodes[n].class])) * b.bonus
		nodes[n].factor = f
		return f
	}
	beams := make([]beamEntry, 1, 4*b.width)
	beams[0] = beamEntry{node: 0, pb: 1}
	next := make([]beamEntry, 0, 4*b.width)
	add := func(n int32, pb, pnb float64) {
		for i := range next {
			if next[i].node == n {
				next[i].pb += pb
				next[i].pnb += pnb
				return
			}
		}
		next = append(next, beamEntry{node: n, pb: pb, pnb: pnb})
	}
	var cands []int
	for t := range T {
		row := probs[t*C : (t+1)*C]
		cands = cands[:0]
		if best, bp := argmax(row); bp >= 1-minProb {
			// The rest share less than minProb: no other class is tried.
			if best != 0 {
				cands = append(cands, best)
			}
		} else {
			for c := 1; c < C; c++ {
				if row[c] >= minProb {
					cands = append(cands, c)
				}
			}
		}
		if len(cands) == 0 {
			// Only the blank: every prefix ends in it now, in the same order.
			for i := range beams {
				beams[i].pb, beams[i].pnb = beams[i].pb+beams[i].pnb, 0
			}
			continue
		}
		blank := float64(row[0])
		next = next[:0]
		for _, e := range beams {
			add(e.node, (e.pb+e.pnb)*blank, 0)
			last := int(nodes[e.node].class)
			for _, c := range cands {
				p := float64(row[c])
				if c == last {
					add(e.node, 0, e.pnb*p) // the same character, still
					if e.pb > 0 {
						n := child(e.node, c) // the character again, after a blank
						add(n, 0, e.pb*p*factor(n))
					}
					continue
				}
				n := child(e.node, c)
				add(n, 0, (e.pb+e.pnb)*p*factor(n))
			}
		}
		// The best width prefixes, best first (insertion sort: a few dozen).
		for i := 1; i < len(next); i++ {
			for j := i; j > 0 && next[j].pb+next[j].pnb > next[j-1].pb+next[j-1].pnb; j-- {
				next[j], next[j-1] = next[j-1], next[j]
			}
		}
		// Rescale (only the ratios between prefixes matter, and long lines
		// would underflow) and drop prefixes far behind the best.
		keep := min(len(next), b.width)
		if top := next[0].pb + next[0].pnb; top > 0 {
			for i := range keep {
				next[i].pb /= top
				next[i].pnb /= top
				if next[i].pb+next[i].pnb < beamCut {
					keep = i
					break
				}
			}
		}
		next = next[:keep]
		beams, next = next, beams
	}
	best := beams[0].node
	out := make([]int, nodes[best].depth)
	for n := best; n > 0; n = nodes[n].parent {
		out[nodes[n].depth-1] = int(nodes[n].class)
	}
	return out
}

// ctcAlign places a class sequence on the time steps: the most probable
// CTC path that spells it (Viterbi over blank, l1, blank, l2, ..., blank).
// Each character gets the steps it spans and its highest probability there.
func ctcAlign(probs []float32, T, C int, labels []int) []ctcChar {
	if len(labels) == 0 || T == 0 {
		return nil
	}
	S := 2*len(labels) + 1
	// Each state reads one of few classes (the blank and the line's distinct
	// characters): their logarithms are taken once a step, not once a state.
	classes := []int{0}
	col := make([]int, S) // the state's index in classes; blanks 0
	for i, c := range labels {
		k := slices.Index(classes, c)
		if k < 0 {
			k = len(classes)
			classes = append(classes, c)
		}
		col[2*i+1] = k
	}
	lp := make([]float64, len(classes))
	logs := func(t int) {
		for k, c := range classes {
			lp[k] = logp(probs[t*C+c])
		}
	}
	neg := math.Inf(-1)
	score := make([]float64, S)
	prev := make([]float64, S)
	from := make([]int8, T*S) // 0: same state, 1: one back, 2: two back
	for s := range S {
		score[s] = neg
	}
	logs(0)
	score[0] = lp[0]
	score[1] = lp[col[1]]
	for t := 1; t < T; t++ {
		copy(prev, score)
		logs(t)
		for s := range S {
			best, arg := prev[s], int8(0)
			if s >= 1 && prev[s-1] > best {
				best, arg = prev[s-1], 1
			}
			if s >= 2 && s%2 == 1 && labels[s/2] != labels[s/2-1] && prev[s-2] > best {
				best, arg = prev[s-2], 2
			}
			score[s] = best + lp[col[s]]
			from[t*S+s] = arg
		}
	}
	s := S - 1
	if score[S-2] > score[S-1] {
		s = S - 2
	}
	chars := make([]ctcChar, len(labels))
	for i := range chars {
		chars[i] = ctcChar{idx: labels[i], t0: -1}
	}
	for t := T - 1; t >= 0; t-- {
		if s%2 == 1 {
			c := &chars[s/2]
			if c.t0 < 0 {
				c.t1 = t
			}
			c.t0 = t
			c.prob = max(c.prob, probs[t*C+labels[s/2]])
		}
		s -= int(from[t*S+s])
	}
	return chars
}

func logp(p float32) float64 {
	if p <= 0 {
		return -1e30
	}
	return math.Log(float64(p))
}

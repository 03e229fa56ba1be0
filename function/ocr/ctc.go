package ocr

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
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
	// The characters gather on the stack and leave in one allocation of
	// their number, instead of the slice growing by doubling.
	var buf [128]ctcChar
	out := buf[:0]
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
	if len(out) == 0 {
		return nil
	}
	return append([]ctcChar(nil), out...)
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

// argmax returns the index and value of the largest probability in row,
// the first of equal ones. The rows are softmax outputs, so a value above
// one half is the maximum, and most steps are a confident blank or
// character: the scan first looks for such a value alone, a comparison per
// class that the branch predictor gets right, where tracking the maximum
// mispredicts at each new one. Only a row without one (a few in a thousand)
// is scanned for its maximum.
func argmax(row []float32) (int, float32) {
	bp := row[0]
	if bp > 0.5 || bp != bp { // nothing beats a NaN blank either
		return 0, bp
	}
	c := 1
	for ; c+8 <= len(row); c += 8 {
		if r := row[c : c+8 : c+8]; r[0] > 0.5 || r[1] > 0.5 || r[2] > 0.5 || r[3] > 0.5 || r[4] > 0.5 || r[5] > 0.5 || r[6] > 0.5 || r[7] > 0.5 {
			break
		}
	}
	for ; c < len(row); c++ {
		if row[c] > 0.5 {
			return c, row[c]
		}
	}
	best := 0
	for c := 1; c < len(row); c++ {
		if v := row[c]; v > bp {
			best, bp = c, v
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
	// The bits a class takes in a factorCache key; 0 where a key of order
	// classes would not fit in 64 bits.
	keyBits int
	// Searches' buffers (*beamSearch), kept for the next line. Several of
	// the engine's workers may decode with one ctcBeam at the same time;
	// each takes a search of its own.
	searches sync.Pool
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
	// Key fields hold classes 1..len(dict) and the line start, len(dict)+1.
	keyBits := bits.Len(uint(len(runes)))
	if lm.order*keyBits > 64 {
		keyBits = 0
	}
	return &ctcBeam{lm: lm, runes: runes, bonus: math.Exp(bonus), width: max(width, 1), keyBits: keyBits}
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

// beamSearch is one decode's working memory: the prefix tree, the beam and
// the next one, the classes tried at a step, and the factor cache, which
// outlives the line.
type beamSearch struct {
	b           *ctcBeam
	nodes       []beamNode
	beams, next []beamEntry
	cands       []int
	ctx         [16]int32    // a node's context, as classes
	runes       [16]rune     // and as the language model's characters
	factors     *factorCache // kept with the buffers, for the lines that follow
	keyed       bool         // whether this output's classes fit factorCache keys (C <= len(runes))
}

// factorCache keeps the factors of recent prefixes' last characters (what
// the language model makes of a class after up to order-1 others), by the
// classes. A page's lines ask for many of the same (common words, and the
// readings the search weighs at the same spots), and the model's table,
// megabytes large, misses the processor's caches at nearly every probe of
// a query's two or three, where this one stays in them. The key holds the
// classes themselves, not a hash, so that an answer is always the model's.
type factorCache [1 << factorCacheBits]factorEntry

// 4096 entries of 16 bytes: on the corpus's pages, two in five queries hit
// (one in two on the real ones); half or four times as many entries change
// that by a few points.
const factorCacheBits = 12

type factorEntry struct {
	key    uint64 // 0: empty
	factor float64
}

// decode returns the most probable class sequence of one T x C output.
func (b *ctcBeam) decode(probs []float32, T, C int) []int {
	s, _ := b.searches.Get().(*beamSearch)
	if s == nil {
		s = &beamSearch{b: b, factors: new(factorCache)}
	}
	defer b.searches.Put(s)
	return s.decode(probs, T, C)
}

// decode runs the search on one output, reusing s's buffers.
func (s *beamSearch) decode(probs []float32, T, C int) []int {
	s.nodes = append(s.nodes[:0], beamNode{parent: -1, firstChild: -1, nextSibling: -1, factor: 1})
	s.beams = append(s.beams[:0], beamEntry{node: 0, pb: 1})
	s.keyed = s.b.keyBits > 0 && C <= len(s.b.runes)
	for t := range T {
		row := probs[t*C : (t+1)*C : (t+1)*C]
		s.cands = stepClasses(row, s.cands)
		if len(s.cands) == 0 {
			// Only the blank: every prefix ends in it now, in the same order.
			for i := range s.beams {
				s.beams[i].pb, s.beams[i].pnb = s.beams[i].pb+s.beams[i].pnb, 0
			}
			continue
		}
		s.step(row)
	}
	nodes := s.nodes
	best := s.beams[0].node
	out := make([]int, nodes[best].depth)
	for n := best; n > 0; n = nodes[n].parent {
		out[nodes[n].depth-1] = int(nodes[n].class)
	}
	return out
}

// stepClasses returns in cands the classes other than the blank that the
// search tries at a step: where argmax finds a class of at least 1-minProb,
// that one alone (none when it is the blank: the rest share less than
// minProb), else every class of at least minProb. One pass does both, since
// argmax's class above one half is also above minProb: a confident step
// ends there, and the rest are a few classes among many below minProb.
func stepClasses(row []float32, cands []int) []int {
	cands = cands[:0]
	decided := false // whether argmax's class is known (and not confident)
	if r0 := row[0]; r0 > 0.5 || r0 != r0 {
		if r0 >= 1-minProb {
			return cands
		}
		decided = true
	}
	for c0 := 1; c0 < len(row); c0 += 8 {
		r := row[c0:min(c0+8, len(row))]
		// Eight at a time while all are below minProb, as nearly all are.
		if len(r) == 8 && r[0] < minProb && r[1] < minProb && r[2] < minProb && r[3] < minProb &&
			r[4] < minProb && r[5] < minProb && r[6] < minProb && r[7] < minProb {
			continue
		}
		for k, v := range r {
			if !(v >= minProb) {
				continue
			}
			if !decided && v > 0.5 {
				if v >= 1-minProb {
					return append(cands[:0], c0+k)
				}
				decided = true
			}
			cands = append(cands, c0+k)
		}
	}
	return cands
}

// step extends each prefix in the beam by the blank and by the step's
// candidate classes, and keeps the best width of the prefixes they make.
func (s *beamSearch) step(row []float32) {
	blank := float64(row[0])
	s.next = s.next[:0]
	for _, e := range s.beams {
		s.add(e.node, (e.pb+e.pnb)*blank, 0)
		last := int(s.nodes[e.node].class)
		for _, c := range s.cands {
			p := float64(row[c])
			if c == last {
				s.add(e.node, 0, e.pnb*p) // the same character, still
				if e.pb > 0 {
					n := s.child(e.node, c) // the character again, after a blank
					s.add(n, 0, e.pb*p*s.factor(n))
				}
				continue
			}
			n := s.child(e.node, c)
			s.add(n, 0, (e.pb+e.pnb)*p*s.factor(n))
		}
	}
	next := s.next
	// The best width prefixes, best first (insertion sort: a few dozen).
	for i := 1; i < len(next); i++ {
		for j := i; j > 0 && next[j].pb+next[j].pnb > next[j-1].pb+next[j-1].pnb; j-- {
			next[j], next[j-1] = next[j-1], next[j]
		}
	}
	// Rescale (only the ratios between prefixes matter, and long lines
	// would underflow) and drop prefixes far behind the best.
	keep := min(len(next), s.b.width)
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
	s.beams, s.next = next[:keep], s.beams
}

// add sums a path's probabilities into the next beam's entry for node n.
func (s *beamSearch) add(n int32, pb, pnb float64) {
	for i := range s.next {
		if s.next[i].node == n {
			s.next[i].pb += pb
			s.next[i].pnb += pnb
			return
		}
	}
	s.next = append(s.next, beamEntry{node: n, pb: pb, pnb: pnb})
}

// child returns node n's child for class c, making it if it is new.
func (s *beamSearch) child(n int32, c int) int32 {
	for k := s.nodes[n].firstChild; k >= 0; k = s.nodes[k].nextSibling {
		if int(s.nodes[k].class) == c {
			return k
		}
	}
	id := int32(len(s.nodes))
	s.nodes = append(s.nodes, beamNode{parent: n, class: int32(c), depth: s.nodes[n].depth + 1, firstChild: -1, nextSibling: s.nodes[n].firstChild})
	s.nodes[n].firstChild = id
	return id
}

// factor returns what node n's character multiplies its prefix by: the
// language model's probability of it after the prefix, times the bonus.
// It is computed once per node, and looked up in the factor cache first.
func (s *beamSearch) factor(n int32) float64 {
	nodes := s.nodes
	if f := nodes[n].factor; f != 0 {
		return f
	}
	b := s.b
	// The context: up to order-1 classes before the node's own, nearest
	// first; a line starts at a word boundary, keyed as the class after the
	// last.
	lineStart := int32(len(b.runes))
	m := 0
	for p := nodes[n].parent; p > 0 && m < b.lm.order-1; p = nodes[p].parent {
		s.ctx[m] = nodes[p].class
		m++
	}
	if m < b.lm.order-1 {
		s.ctx[m] = lineStart
		m++
	}
	var cached *factorEntry
	var key uint64
	if s.keyed {
		key = uint64(nodes[n].class)
		for i, c := range s.ctx[:m] {
			key |= uint64(c) << (uint(i+1) * uint(b.keyBits))
		}
		cached = &s.factors[(key*0x9e3779b97f4a7c15)>>(64-factorCacheBits)]
		if cached.key == key {
			nodes[n].factor = cached.factor
			return cached.factor
		}
	}
	// The model takes the context nearest last.
	ctx := s.runes[len(s.runes)-m:]
	for i, c := range s.ctx[:m] {
		r := rune(' ')
		if c != lineStart {
			r = b.runes[c]
		}
		ctx[m-1-i] = r
	}
	f := float64(b.lm.prob(ctx, b.runes[nodes[n].class])) * b.bonus
	nodes[n].factor = f
	if cached != nil {
		cached.key, cached.factor = key, f
	}
	return f
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

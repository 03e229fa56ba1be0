package ocr

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

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

// TestCTCDecodeRandom checks greedy decoding and the beam search against
// the plain versions below on random outputs: confident and doubtful steps,
// ties, values right at the thresholds the decoders test, and NaNs.
func TestCTCDecodeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	letters := []string{"a", "b", "l", "I", "o", "s", "t", " ", "x", "ch", "ſ", ""}
	below := func(x float32) float32 { return math.Nextafter32(x, 0) }
	edges := []float32{0, 0.5, math.Nextafter32(0.5, 1), 1 - minProb, below(1 - minProb), minProb, below(minProb), 1, float32(math.NaN()), 0.25}
	row := func(r []float32) {
		switch rng.IntN(8) {
		case 0, 1, 2: // confident: one class near 1, the rest share what is left
			for i := range r {
				r[i] = rng.Float32() * 1e-3
			}
			r[rng.IntN(len(r))] = 1 - rng.Float32()*0.02
		case 3: // two or three likely classes
			for i := range r {
				r[i] = rng.Float32() * 0.02
			}
			for range 2 + rng.IntN(2) {
				r[rng.IntN(len(r))] = rng.Float32() * 0.7
			}
		case 4: // anything
			for i := range r {
				r[i] = rng.Float32()
			}
		case 5: // the thresholds, exactly, and ties
			for i := range r {
				r[i] = edges[rng.IntN(len(edges))]
			}
		default: // a softmax of random logits
			var sum float32
			for i := range r {
				r[i] = float32(math.Exp(4 * rng.NormFloat64()))
				sum += r[i]
			}
			for i := range r {
				r[i] /= sum
			}
		}
	}
	// Beams over random dictionaries with models of orders 2 and 5, each
	// decoding many outputs, so that factors cached for one output are
	// looked up for others.
	var beams []*ctcBeam
	for _, lm := range []*charLM{tinyLM(t, 0), tinyLM(t, 0.25), tinyLM(t, 1), randomLM(t, rng, 5, 0.25), randomLM(t, rng, 5, 1)} {
		for range 3 {
			dict := make([]string, 1+rng.IntN(20))
			for i := range dict {
				dict[i] = letters[rng.IntN(len(letters))]
			}
			beams = append(beams, newCTCBeam(lm, dict, rng.Float64()*2-0.5, rng.IntN(12)))
		}
	}
	for n := range 3000 {
		beam := beams[rng.IntN(len(beams))]
		T, C := 1+rng.IntN(60), 2+rng.IntN(len(beam.runes)-1) // C may be below the dictionary's
		probs := make([]float32, T*C)
		for tt := range T {
			row(probs[tt*C : (tt+1)*C])
		}
		if got, want := ctcGreedy(probs, T, C), refCTCGreedy(probs, T, C); !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Fatalf("case %d: greedy %v, want %v", n, got, want)
		}
		if got, want := beam.decode(probs, T, C), refBeamDecode(beam, probs, T, C); !slices.Equal(got, want) {
			t.Fatalf("case %d: beam %v, want %v", n, got, want)
		}
	}
}

// TestCTCBeamConcurrent decodes with one beam from several goroutines, as
// the engine's workers do (run with -race).
func TestCTCBeamConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	beam := newCTCBeam(randomLM(t, rng, 5, 0.5), []string{"a", "b", "l", "I", "o", "s", "t", " "}, 0.5, 8)
	const C = 9
	var outputs [][]float32
	for range 64 {
		probs := make([]float32, 40*C)
		for i := range probs {
			probs[i] = rng.Float32() * rng.Float32()
		}
		outputs = append(outputs, probs)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for k := range outputs {
				probs := outputs[(k+16*w)%len(outputs)]
				if got, want := beam.decode(probs, 40, C), refBeamDecode(beam, probs, 40, C); !slices.Equal(got, want) {
					t.Errorf("worker %d, output %d: %v, want %v", w, k, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// randomLM is a model of the given order over a few letters, with random
// n-grams, probabilities and backoff weights.
func randomLM(t *testing.T, rng *rand.Rand, order int, weight float64) *charLM {
	t.Helper()
	letters := []rune("ablIostx ")
	var b strings.Builder
	fmt.Fprintf(&b, "pero-charlm 1\norder %d\n", order)
	for range 300 {
		g := make([]rune, 1+rng.IntN(order))
		for i := range g {
			g[i] = letters[rng.IntN(len(letters))]
		}
		fmt.Fprintf(&b, "%.3f\t%.3f\t%s\n", -5*rng.Float64(), -2*rng.Float64(), string(g))
	}
	lm, err := parseCharLM([]byte(b.String()), weight)
	if err != nil {
		t.Fatal(err)
	}
	return lm
}

// TestCTCDecodeCorpus compares the decoders with the plain versions on the
// recognizer's output for corpus lines, with the shipped language model
// (needs the models and the corpus).
func TestCTCDecodeCorpus(t *testing.T) {
	a := needCorpus(t)
	cfg, err := testConfig(a, "[runtime]\nworkers = 1\n")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEngine(cfg, Needs{Recognize: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for i, o := range corpusLineOutputs(t, a, e, 50) {
		probs, T, C := o.probs, o.T, o.C
		if got, want := ctcGreedy(probs, T, C), refCTCGreedy(probs, T, C); !slices.Equal(got, want) {
			t.Errorf("line %d: greedy %v, want %v", i+1, got, want)
		}
		if got, want := e.beam.decode(probs, T, C), refBeamDecode(e.beam, probs, T, C); !slices.Equal(got, want) {
			t.Errorf("line %d: beam %v, want %v", i+1, got, want)
		}
	}
}

// refCTCGreedy, refArgmax and refBeamDecode are the decoders without their
// shortcuts (a scan per step for the argmax, another for the beam's
// classes, no buffers kept, the language model asked for every new prefix):
// ctcGreedy and ctcBeam.decode must return exactly what these do.
func refCTCGreedy(probs []float32, T, C int) []ctcChar {
	var out []ctcChar
	prev := -1
	for t := range T {
		row := probs[t*C : (t+1)*C : (t+1)*C]
		best, bp := refArgmax(row)
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

func refArgmax(row []float32) (int, float32) {
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

func refBeamDecode(b *ctcBeam, probs []float32, T, C int) []int {
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
		if best, bp := refArgmax(row); bp >= 1-minProb {
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

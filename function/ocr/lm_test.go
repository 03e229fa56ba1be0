package ocr

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyLM is an order-2 model over a, b, l, I, o, s, t and space:
// P(b|a) = 0.9 is in the model, the others back off.
func tinyLM(t *testing.T, weight float64) *charLM {
	t.Helper()
	var b strings.Builder
	b.WriteString("pero-charlm 1\norder 2\n")
	ln := math.Log
	for _, e := range []struct {
		p, bo float64
		g     string
	}{
		{0.3, 0.2, "a"}, {0.2, 1, "b"}, {0.1, 1, "l"}, {0.05, 0.5, "I"}, {0.15, 1, "o"}, {0.1, 1, "s"}, {0.05, 1, "t"}, {0.05, 1, " "},
		{0.9, 1, "ab"}, {0.6, 1, "lo"}, {0.001, 1, "Io"},
	} {
		fmt.Fprintf(&b, "%.6f\t%.6f\t%s\n", ln(e.p), ln(e.bo), e.g)
	}
	lm, err := parseCharLM([]byte(b.String()), weight)
	if err != nil {
		t.Fatal(err)
	}
	return lm
}

func TestCharLMProb(t *testing.T) {
	lm := tinyLM(t, 1)
	unk := 0.05 / 10 // ten times rarer than the rarest character seen
	for _, c := range []struct {
		ctx  string
		r    rune
		want float64
	}{
		{"a", 'b', 0.9},               // in the model
		{"a", 'a', 0.2 * 0.3},         // backs off: a's backoff weight times P(a)
		{"b", 'a', 0.3},               // b's backoff weight is 1
		{"xyz a", 'b', 0.9},           // only the last order-1 characters count
		{"a", 'z', 0.2 * unk},         // never seen
		{"", 'o', 0.15},               // no context: the unigram
		{"I", 'o', 0.001},             // in the model
		{"I", 't', 0.5 * 0.05},        // I's backoff weight
		{"q", 'a', 0.3},               // an unknown context backs off for free
		{"a", lmRune('ſ'), 0.2 * 0.1}, // the long s is read as s
	} {
		got := float64(lm.prob([]rune(c.ctx), c.r))
		if math.Abs(got-c.want) > 1e-5 {
			t.Errorf("P(%q | %q) = %.6f, want %.6f", c.r, c.ctx, got, c.want)
		}
	}
	// The weight is a power: P^0.5.
	if got, want := float64(tinyLM(t, 0.5).prob([]rune("a"), 'b')), math.Sqrt(0.9); math.Abs(got-want) > 1e-5 {
		t.Errorf("P(b|a)^0.5 = %.6f, want %.6f", got, want)
	}
}

func TestReadCharLMErrors(t *testing.T) {
	for name, text := range map[string]string{
		"empty":       "",
		"header":      "arpa 1\norder 2\n-1\t0\ta\n",
		"order":       "pero-charlm 1\norder x\n-1\t0\ta\n",
		"order zero":  "pero-charlm 1\norder 0\n-1\t0\ta\n",
		"no n-grams":  "pero-charlm 1\norder 2\n",
		"two fields":  "pero-charlm 1\norder 2\n-1\ta\n",
		"bad number":  "pero-charlm 1\norder 2\nx\t0\ta\n",
		"positive":    "pero-charlm 1\norder 2\n0.5\t0\ta\n",
		"backoff > 1": "pero-charlm 1\norder 2\n-1\t0.5\ta\n",
		"huge":        "pero-charlm 1\norder 2\n-1\t-1e308\ta\n",
		"no n-gram":   "pero-charlm 1\norder 2\n-1\t0\t\n",
		"above order": "pero-charlm 1\norder 2\n-1\t0\tabc\n",
	} {
		if _, err := parseCharLM([]byte(text), 1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	dir := t.TempDir()
	if _, err := loadCharLM(filepath.Join(dir, "missing.lm.gz"), 1); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	plain := filepath.Join(dir, "plain.lm")
	if err := os.WriteFile(plain, []byte("pero-charlm 1\norder 1\n-1\t0\ta\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCharLM(plain, 1); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("uncompressed file: %v", err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("pero-charlm 1\norder 1\n-1\t0\ta\n"))
	zw.Close()
	good := filepath.Join(dir, "good.lm.gz")
	if err := os.WriteFile(good, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if lm, err := loadCharLM(good, 1); err != nil || lm.order != 1 || lm.size != 1 {
		t.Errorf("good file: %v %+v", err, lm)
	}
}

// frames builds CTC output for dict from steps of "class:prob" choices;
// the rest of each step's probability goes to the blank.
func frames(dict []string, steps [][]string) ([]float32, int, int) {
	C := len(dict) + 1
	probs := make([]float32, len(steps)*C)
	for t, step := range steps {
		rest := float32(1)
		for _, s := range step {
			var ch string
			var p float32
			i := strings.LastIndex(s, ":")
			ch = s[:i]
			fmt.Sscan(s[i+1:], &p)
			for c, d := range dict {
				if d == ch {
					probs[t*C+c+1] = p
				}
			}
			rest -= p
		}
		probs[t*C] = rest
	}
	return probs, len(steps), C
}

func spell(dict []string, labels []int) string {
	var b strings.Builder
	for _, c := range labels {
		b.WriteString(dict[c-1])
	}
	return b.String()
}

func TestCTCBeam(t *testing.T) {
	dict := []string{"a", "b", "l", "I", "o", "s", "t", " "}
	// One character per step with a blank step between; "I" and "l" are
	// one glyph in many fonts and the model leans to I.
	lost := [][]string{{"I:0.51", "l:0.48"}, {}, {"o:0.99"}, {}, {"s:0.99"}, {}, {"t:0.99"}, {}}
	probs, T, C := frames(dict, lost)
	if got, _ := ctcText(ctcGreedy(probs, T, C), dict); !strings.HasPrefix(got, "Iost") {
		t.Fatalf("greedy read %q, want the model's own Iost", got)
	}
	beam := newCTCBeam(tinyLM(t, 1), dict, 0, 8)
	if got := spell(dict, beam.decode(probs, T, C)); got != "lost" {
		t.Errorf("with the language model: %q, want lost (P(o|I) is 600 times lower than P(o|l))", got)
	}
	// Weight 0: the language model counts for nothing and the beam search
	// reads what the model reads.
	if got := spell(dict, newCTCBeam(tinyLM(t, 0), dict, 0, 8).decode(probs, T, C)); got != "Iost" {
		t.Errorf("weight 0: %q, want Iost", got)
	}
	// A character held over steps counts once; doubled, it needs a blank between.
	for _, c := range []struct {
		steps [][]string
		want  string
	}{
		{[][]string{{"a:0.99"}, {"a:0.99"}, {"b:0.99"}}, "ab"},
		{[][]string{{"a:0.99"}, {}, {"a:0.99"}, {"b:0.99"}}, "aab"},
		{[][]string{{}, {}, {}}, ""},
		// The blank leads at both last steps, but the paths that spell "ab"
		// add up to 0.61 of what follows the a, those of "a" to 0.39.
		{[][]string{{"a:0.99"}, {"b:0.4"}, {"b:0.35"}}, "ab"},
	} {
		probs, T, C := frames(dict, c.steps)
		if got := spell(dict, newCTCBeam(tinyLM(t, 0), dict, 0, 8).decode(probs, T, C)); got != c.want {
			t.Errorf("%v: %q, want %q", c.steps, got, c.want)
		}
	}
}

func TestCTCAlign(t *testing.T) {
	dict := []string{"a", "b", "l", "I", "o", "s", "t", " "}
	steps := [][]string{{}, {"l:0.6", "I:0.4"}, {"l:0.7"}, {}, {"o:0.9"}, {}, {}, {"a:0.8"}, {"a:0.9"}}
	probs, T, C := frames(dict, steps)
	chars := ctcAlign(probs, T, C, []int{3, 5, 1}) // l o a
	want := []ctcChar{{idx: 3, t0: 1, t1: 2, prob: 0.7}, {idx: 5, t0: 4, t1: 4, prob: 0.9}, {idx: 1, t0: 7, t1: 8, prob: 0.9}}
	if len(chars) != len(want) {
		t.Fatalf("got %+v, want %+v", chars, want)
	}
	for i := range want {
		if chars[i].idx != want[i].idx || chars[i].t0 != want[i].t0 || chars[i].t1 != want[i].t1 || math.Abs(float64(chars[i].prob-want[i].prob)) > 1e-6 {
			t.Errorf("char %d: got %+v, want %+v", i, chars[i], want[i])
		}
	}
	// A label the model never shows still gets a step of its own.
	chars = ctcAlign(probs, T, C, []int{4, 5, 1}) // I o a
	if chars[0].t0 < 0 || chars[0].t0 > chars[0].t1 || chars[0].t1 >= chars[1].t0 {
		t.Errorf("I o a: %+v", chars)
	}
	if ctcAlign(probs, T, C, nil) != nil || ctcAlign(nil, 0, C, []int{1}) != nil {
		t.Error("nothing to align: want nil")
	}
}

// TestCTCAlignRandom checks the alignment against a plain Viterbi that
// takes every cell's logarithm, on random outputs and labels with repeats.
func TestCTCAlignRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	plain := func(probs []float32, T, C int, labels []int) []int {
		S := 2*len(labels) + 1
		class := func(s int) int {
			if s%2 == 0 {
				return 0
			}
			return labels[s/2]
		}
		score, prev := make([]float64, S), make([]float64, S)
		from := make([]int8, T*S)
		for s := range S {
			score[s] = math.Inf(-1)
		}
		score[0], score[1] = logp(probs[0]), logp(probs[class(1)])
		for tt := 1; tt < T; tt++ {
			copy(prev, score)
			for s := range S {
				best, arg := prev[s], int8(0)
				if s >= 1 && prev[s-1] > best {
					best, arg = prev[s-1], 1
				}
				if s >= 2 && s%2 == 1 && labels[s/2] != labels[s/2-1] && prev[s-2] > best {
					best, arg = prev[s-2], 2
				}
				score[s] = best + logp(probs[tt*C+class(s)])
				from[tt*S+s] = arg
			}
		}
		s := S - 1
		if score[S-2] > score[S-1] {
			s = S - 2
		}
		path := make([]int, T)
		for tt := T - 1; tt >= 0; tt-- {
			path[tt] = s
			s -= int(from[tt*S+s])
		}
		return path
	}
	for range 300 {
		T, C := 2+rng.IntN(40), 2+rng.IntN(6)
		probs := make([]float32, T*C)
		for i := range probs {
			probs[i] = rng.Float32()
			if rng.IntN(10) == 0 {
				probs[i] = 0
			}
		}
		labels := make([]int, 1+rng.IntN(max(1, T/3)))
		for i := range labels {
			labels[i] = 1 + rng.IntN(C-1)
		}
		chars := ctcAlign(probs, T, C, labels)
		path := plain(probs, T, C, labels)
		for i, c := range chars {
			t0, t1 := -1, -1
			for tt, s := range path {
				if s == 2*i+1 {
					if t0 < 0 {
						t0 = tt
					}
					t1 = tt
				}
			}
			if c.t0 != t0 || c.t1 != t1 {
				t.Fatalf("T=%d labels %v: char %d at %d-%d, plain Viterbi %d-%d", T, labels, i, c.t0, c.t1, t0, t1)
			}
		}
	}
}

func TestGunzip(t *testing.T) {
	text := bytes.Repeat([]byte("pero-charlm 1\norder 2\n-1.000\t0.000\tab\n"), 500)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Name, zw.Comment, zw.Extra = "model.lm", "a comment", []byte{1, 2, 3}
	zw.Write(text)
	zw.Close()
	got, err := gunzip(gz.Bytes(), 1<<20)
	if err != nil || !bytes.Equal(got, text) {
		t.Fatalf("gunzip: %v, %d bytes of %d", err, len(got), len(text))
	}
	if _, err := gunzip(gz.Bytes(), 100); err == nil || !strings.Contains(err.Error(), "more than 100") {
		t.Errorf("over the limit: %v", err)
	}
	bad := bytes.Clone(gz.Bytes())
	bad[len(bad)-6] ^= 1 // the CRC
	if _, err := gunzip(bad, 1<<20); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("bad CRC: %v", err)
	}
	for _, n := range []int{0, 5, 17, 30, len(gz.Bytes()) / 2} {
		if _, err := gunzip(gz.Bytes()[:n], 1<<20); err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
	if _, err := gunzip(text, 1<<20); err == nil || !strings.Contains(err.Error(), "not gzip") {
		t.Errorf("plain text: %v", err)
	}
}

// The three-decimal values the file holds go through a table; any other
// number through strconv: both give the same probabilities.
func TestLogPowParse(t *testing.T) {
	lp := newLogPow(0.5)
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"-2.345", -2.345, true}, {"0.000", 0, true}, {"-0.000", 0, true}, {"-12.5", -12.5, true},
		{"-1e-3", -0.001, true}, {"0.250", 0.25, true}, {"-45.000", -45, true}, {"-1e308", -1e308, true},
		{"x", 0, false}, {"-2.3.5", 0, false}, {"", 0, false}, {"NaN", 0, false}, {"-1.2a4", 0, false},
	} {
		v, ok := lp.parse([]byte(c.in))
		if ok != c.ok || ok && (math.Abs(v.log-c.want) > 1e-9 || math.Abs(float64(v.pow)-math.Exp(0.5*c.want)) > 1e-6) {
			t.Errorf("%q: %+v %v, want %v %v", c.in, v, ok, c.want, c.ok)
		}
	}
}

// FuzzCharLM feeds the loader arbitrary files, compressed or not: a bad
// model archive is an error at start-up, never a crash or a hang.
func FuzzCharLM(f *testing.F) {
	text := []byte("pero-charlm 1\norder 3\n-1.000\t-0.500\ta\n-0.250\t0.000\tab\n-2.5\t0\tabc\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(text)
	zw.Close()
	f.Add(text)
	f.Add(gz.Bytes())
	f.Add([]byte("pero-charlm 1\norder 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if raw, err := gunzip(data, 1<<20); err == nil {
			data = raw
		}
		lm, err := parseCharLM(data, 0.25)
		if err != nil {
			return
		}
		if lm.order < 1 || lm.size == 0 {
			t.Fatalf("accepted a model of order %d with %d n-grams", lm.order, lm.size)
		}
		ctx := []rune("xyzab")
		for _, r := range "abc z" {
			if p := lm.prob(ctx, r); !(p >= 0 && p <= 1) {
				t.Fatalf("P(%q) = %v", r, p)
			}
		}
	})
}

package ocr

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// charLM is a character n-gram language model in backoff form, as
// training/lm.py writes it: for each n-gram kept, the log probability of its
// last character given the others, and its log backoff weight as a context.
// The beam search (ctcBeam) weighs the recognizer's readings with it, so
// that of two shapes the model cannot tell apart (l and I in many sans-serif
// fonts, a faint diacritic, an apostrophe or a gap) the one that spells a
// likelier text wins.
type charLM struct {
	order int
	// An open-addressing table of n-grams by key, at most half full; key 0
	// marks a free slot.
	slots []lmSlot
	mask  uint64
	size  int
	unk   float32 // probability (raised to the weight) of a character the model never saw
}

// lmSlot holds an n-gram's probability and backoff weight, both raised to
// the model's weight (loadCharLM), so that a query multiplies.
type lmSlot struct {
	key        uint64
	p, backoff float32
}

// get looks an n-gram up by its key.
func (lm *charLM) get(key uint64) (lmSlot, bool) {
	for i := key & lm.mask; ; i = (i + 1) & lm.mask {
		s := lm.slots[i]
		if s.key == key {
			return s, true
		}
		if s.key == 0 {
			return s, false
		}
	}
}

// put adds or replaces an n-gram, growing the table past half full.
func (lm *charLM) put(s lmSlot) {
	if 2*(lm.size+1) > len(lm.slots) {
		old := lm.slots
		lm.slots = make([]lmSlot, max(2*len(old), 1<<16))
		lm.mask = uint64(len(lm.slots) - 1)
		lm.size = 0
		for _, o := range old {
			if o.key != 0 {
				lm.put(o)
			}
		}
	}
	for i := s.key & lm.mask; ; i = (i + 1) & lm.mask {
		switch lm.slots[i].key {
		case 0:
			lm.size++
			fallthrough
		case s.key:
			lm.slots[i] = s
			return
		}
	}
}

const lmHeader = "pero-charlm 1"

// lmRune folds a character to the one the model was trained on: the long s
// is spelt s (the model scores spelling, not letterforms).
func lmRune(r rune) rune {
	if r == 'ſ' {
		return 's'
	}
	return r
}

// lmHash is the key of a character sequence given last character first:
// h = lmHash(lmHash(lmSeed, last), second-to-last)... so that a query can
// lengthen its context one character at a time.
func lmHash(h uint64, r rune) uint64 {
	h ^= uint64(r) + 0x9e3779b97f4a7c15 + h<<6 + h>>2
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 31
	if h == 0 { // 0 marks a free slot
		h = 1
	}
	return h
}

const lmSeed uint64 = 0x2545f4914f6cdd1d

// ngramKey returns the key of an n-gram read from the file.
func ngramKey(g []rune) uint64 {
	h := lmSeed
	for i := len(g) - 1; i >= 0; i-- {
		h = lmHash(h, g[i])
	}
	return h
}

// loadCharLM reads a gzip-compressed model file. Its probabilities are
// raised to weight, the weight the decoder gives the model.
func loadCharLM(path string, weight float64) (*charLM, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("language model %s: %w", path, errNotExist(err))
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("language model %s: not gzip-compressed: %w", path, err)
	}
	lm, err := readCharLM(zr, weight)
	if err != nil {
		return nil, fmt.Errorf("language model %s: %w", path, err)
	}
	return lm, nil
}

func readCharLM(r io.Reader, weight float64) (*charLM, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	if h, _ := next(); h != lmHeader {
		return nil, fmt.Errorf("line 1: %q is not %q", h, lmHeader)
	}
	h, _ := next()
	order, err := strconv.Atoi(strings.TrimPrefix(h, "order "))
	if !strings.HasPrefix(h, "order ") || err != nil || order < 1 || order > 16 {
		return nil, fmt.Errorf("line 2: %q is not \"order N\" (1-16)", h)
	}
	lm := &charLM{order: order}
	g := make([]rune, 0, order)
	minLogp := 0.0
	for {
		text, ok := next()
		if !ok {
			break
		}
		lp, rest, ok1 := strings.Cut(text, "\t")
		bo, gram, ok2 := strings.Cut(rest, "\t")
		p, err1 := strconv.ParseFloat(lp, 32)
		b, err2 := strconv.ParseFloat(bo, 32)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || gram == "" || !utf8.ValidString(gram) || p > 0 {
			return nil, fmt.Errorf("line %d: want \"logp<TAB>backoff<TAB>ngram\", got %q", line, text)
		}
		g = g[:0]
		for _, r := range gram {
			g = append(g, r)
		}
		if len(g) > order {
			return nil, fmt.Errorf("line %d: %d-gram in an order %d model", line, len(g), order)
		}
		lm.put(lmSlot{ngramKey(g), float32(math.Exp(weight * p)), float32(math.Exp(weight * b))})
		if len(g) == 1 {
			minLogp = min(minLogp, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if lm.size == 0 {
		return nil, fmt.Errorf("no n-grams")
	}
	// An unseen character: ten times rarer than the rarest seen.
	lm.unk = float32(math.Exp(weight * (minLogp - math.Ln10)))
	return lm, nil
}

// prob returns P(r | ctx) raised to the model's weight, where ctx holds the
// preceding characters, the nearest last; only its last order-1 are used.
// An n-gram missing from the model backs off to the next shorter context,
// times that context's backoff weight when the context is in the model.
func (lm *charLM) prob(ctx []rune, r rune) float32 {
	n := min(len(ctx), lm.order-1)
	// Keys of (r, ctx[-1], ..., ctx[-k]) and of (ctx[-1], ..., ctx[-k]).
	var gram, hist [16]uint64
	gram[0], hist[0] = lmHash(lmSeed, r), lmSeed
	for k := 1; k <= n; k++ {
		c := ctx[len(ctx)-k]
		gram[k] = lmHash(gram[k-1], c)
		hist[k] = lmHash(hist[k-1], c)
	}
	bo := float32(1)
	for k := n; k >= 0; k-- {
		if e, ok := lm.get(gram[k]); ok {
			return bo * e.p
		}
		if k > 0 {
			if e, ok := lm.get(hist[k]); ok {
				bo *= e.backoff
			}
		}
	}
	return bo * lm.unk
}

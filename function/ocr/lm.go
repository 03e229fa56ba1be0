package ocr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
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

// grow makes room for n n-grams at most half full.
func (lm *charLM) grow(n int) {
	size := 1 << 10
	for size < 2*n {
		size *= 2
	}
	if size <= len(lm.slots) {
		return
	}
	old := lm.slots
	lm.slots = make([]lmSlot, size)
	lm.mask = uint64(size - 1)
	lm.size = 0
	for _, o := range old {
		if o.key != 0 {
			lm.put(o)
		}
	}
}

// build fills the table with entries (a later one replaces an earlier one
// with the same key). They go in by the order of their home slots, so that
// the writes sweep the table instead of missing the cache at each one.
func (lm *charLM) build(entries []lmSlot) {
	lm.grow(len(entries))
	shift := max(bits.Len64(lm.mask)-16, 0)
	start := make([]int32, 1<<16+1)
	for _, e := range entries {
		start[(e.key&lm.mask)>>shift+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	sorted := make([]lmSlot, len(entries))
	for _, e := range entries {
		b := (e.key & lm.mask) >> shift
		sorted[start[b]] = e
		start[b]++
	}
	for _, e := range sorted {
		lm.put(e)
	}
}

// put adds or replaces an n-gram, growing the table past half full.
func (lm *charLM) put(s lmSlot) {
	if 2*(lm.size+1) > len(lm.slots) {
		lm.grow(2 * (lm.size + 1))
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
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("language model %s: %w", path, errNotExist(err))
	}
	text, err := gunzip(data, maxLMBytes)
	if err != nil {
		return nil, fmt.Errorf("language model %s: %w", path, err)
	}
	lm, err := parseCharLM(text, weight)
	if err != nil {
		return nil, fmt.Errorf("language model %s: %w", path, err)
	}
	return lm, nil
}

// maxLMBytes bounds a model's uncompressed size (the shipped one is 7 MB).
const maxLMBytes = 1 << 30

// gunzip decompresses a single-member gzip file (RFC 1952) in one pass
// into a buffer of the size its trailer gives, with the package's own
// inflate, and checks its CRC: a model loads at every start of a runner.
func gunzip(data []byte, limit int) ([]byte, error) {
	const (
		fhcrc    = 1 << 1
		fextra   = 1 << 2
		fname    = 1 << 3
		fcomment = 1 << 4
	)
	if len(data) < 18 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
		return nil, errors.New("not gzip-compressed")
	}
	flags, body := data[3], data[10:len(data)-8]
	skipZero := func() bool {
		i := bytes.IndexByte(body, 0)
		if i < 0 {
			return false
		}
		body = body[i+1:]
		return true
	}
	if flags&fextra != 0 {
		if len(body) < 2 || len(body) < 2+int(binary.LittleEndian.Uint16(body)) {
			return nil, errors.New("gzip: truncated header")
		}
		body = body[2+int(binary.LittleEndian.Uint16(body)):]
	}
	if flags&fname != 0 && !skipZero() || flags&fcomment != 0 && !skipZero() {
		return nil, errors.New("gzip: truncated header")
	}
	if flags&fhcrc != 0 {
		if len(body) < 2 {
			return nil, errors.New("gzip: truncated header")
		}
		body = body[2:]
	}
	trailer := data[len(data)-8:]
	size := int(binary.LittleEndian.Uint32(trailer[4:]))
	if size > limit {
		return nil, fmt.Errorf("gzip: %d bytes uncompressed, more than %d", size, limit)
	}
	out := make([]byte, size)
	if err := inflate(body, out); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if crc32.ChecksumIEEE(out) != binary.LittleEndian.Uint32(trailer) {
		return nil, errors.New("gzip: checksum mismatch")
	}
	return out, nil
}

// parseCharLM reads the model's text without a string per line: it has
// hundreds of thousands of lines.
func parseCharLM(data []byte, weight float64) (*charLM, error) {
	line := 0
	next := func() ([]byte, bool) {
		if len(data) == 0 {
			return nil, false
		}
		line++
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		return l, true
	}
	if h, _ := next(); string(h) != lmHeader {
		return nil, fmt.Errorf("line 1: %q is not %q", h, lmHeader)
	}
	h, _ := next()
	order, err := strconv.Atoi(strings.TrimPrefix(string(h), "order "))
	if !bytes.HasPrefix(h, []byte("order ")) || err != nil || order < 1 || order > 16 {
		return nil, fmt.Errorf("line 2: %q is not \"order N\" (1-16)", h)
	}
	lm := &charLM{order: order}
	entries := make([]lmSlot, 0, bytes.Count(data, []byte{'\n'})+1)
	// e^(weight * x) for the log probabilities the file holds, to three decimals.
	pow := newLogPow(weight)
	g := make([]rune, 0, order)
	minLogp := 0.0
	for {
		text, ok := next()
		if !ok {
			break
		}
		if len(text) == 0 && len(data) == 0 {
			break // the final newline
		}
		bad := func() error {
			return fmt.Errorf("line %d: want \"logp<TAB>backoff<TAB>ngram\", got %q", line, text)
		}
		lp, rest, ok1 := bytes.Cut(text, []byte{'\t'})
		bo, gram, ok2 := bytes.Cut(rest, []byte{'\t'})
		if !ok1 || !ok2 || len(gram) == 0 || !utf8.Valid(gram) {
			return nil, bad()
		}
		// Both are logarithms of probabilities and of backoff weights, at most 1.
		p, ok1 := pow.parse(lp)
		b, ok2 := pow.parse(bo)
		if !ok1 || !ok2 || p.log > 0 || b.log > 0 || p.log < -1000 || b.log < -1000 {
			return nil, bad()
		}
		g = g[:0]
		for len(gram) > 0 {
			r, n := utf8.DecodeRune(gram)
			g = append(g, r)
			gram = gram[n:]
		}
		if len(g) > order {
			return nil, fmt.Errorf("line %d: %d-gram in an order %d model", line, len(g), order)
		}
		entries = append(entries, lmSlot{ngramKey(g), p.pow, b.pow})
		if len(g) == 1 {
			minLogp = min(minLogp, p.log)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("no n-grams")
	}
	lm.build(entries)
	// An unseen character: ten times rarer than the rarest seen.
	lm.unk = float32(math.Exp(weight * (minLogp - math.Ln10)))
	return lm, nil
}

// logPow parses log probabilities and raises them to a weight, through a
// table for the three-decimal values the file holds.
type logPow struct {
	weight float64
	table  []float32 // e^(weight * -i/1000)
}

type powValue struct {
	log float64
	pow float32
}

func newLogPow(weight float64) *logPow {
	t := make([]float32, 40000)
	for i := range t {
		t[i] = float32(math.Exp(weight * -float64(i) / 1000))
	}
	return &logPow{weight: weight, table: t}
}

// parse reads a decimal such as -2.345 or 0.000 through the table; other
// forms go through strconv.
func (lp *logPow) parse(b []byte) (powValue, bool) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if n := len(digits); n >= 5 && digits[n-4] == '.' {
		milli, ok := 0, true
		for i, c := range digits {
			switch {
			case c >= '0' && c <= '9':
				milli = 10*milli + int(c-'0')
			case i != n-4:
				ok = false
			}
		}
		if ok && (neg || milli == 0) && milli < len(lp.table) {
			return powValue{-float64(milli) / 1000, lp.table[milli]}, true
		}
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return powValue{}, false
	}
	return powValue{v, float32(math.Exp(lp.weight * v))}, true
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

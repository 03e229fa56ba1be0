// Package eval scores OCR output against ground truth the way the corpus
// README defines it: Levenshtein distance over Unicode code points (CER) or
// words (WER) divided by the reference length, over the whole page text after
// NFC and after collapsing all whitespace, newlines included, to single spaces.
package eval

import (
	"strings"

	"golang.org/x/text/unicode/norm"
)

// Normalize applies NFC and collapses whitespace runs to one space, trimmed.
func Normalize(s string) string {
	return strings.Join(strings.Fields(norm.NFC.String(s)), " ")
}

// Counts are edit distances and reference lengths; they add up over pages.
type Counts struct {
	CharErrs, Chars int
	WordErrs, Words int
}

// Add accumulates o into c.
func (c *Counts) Add(o Counts) {
	c.CharErrs += o.CharErrs
	c.Chars += o.Chars
	c.WordErrs += o.WordErrs
	c.Words += o.Words
}

// CER is the character error rate (0 when there is no reference text).
func (c Counts) CER() float64 { return ratio(c.CharErrs, c.Chars) }

// WER is the word error rate.
func (c Counts) WER() float64 { return ratio(c.WordErrs, c.Words) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Compare scores hypothesis hyp against reference ref.
func Compare(ref, hyp string) Counts {
	r, h := Normalize(ref), Normalize(hyp)
	rw, hw := strings.Fields(r), strings.Fields(h)
	return Counts{
		CharErrs: levenshtein([]rune(r), []rune(h)),
		Chars:    len([]rune(r)),
		WordErrs: levenshtein(rw, hw),
		Words:    len(rw),
	}
}

func levenshtein[T comparable](a, b []T) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// FoldLongS replaces the long s 'ſ' (U+017F) by 's', and its precomposed
// form with dot above 'ẛ' (U+1E9B) by 'ṡ', so that a hypothesis that keeps
// the print's long s can be scored against a modernised transcription.
func FoldLongS(s string) string {
	if !strings.ContainsAny(s, "\u017f\u1e9b") {
		return s
	}
	return strings.NewReplacer("\u017f", "s", "\u1e9b", "\u1e61").Replace(s)
}

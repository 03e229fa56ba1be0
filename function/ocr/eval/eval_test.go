package eval

import "testing"

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		ref, hyp        string
		charErrs, chars int
		wordErrs, words int
	}{
		{"abc def", "abc def", 0, 7, 0, 2},
		{"abc\n  def\n", "abc def", 0, 7, 0, 2}, // whitespace and newlines collapse
		{"abc def", "abd def", 1, 7, 1, 2},
		{"abc def", "", 7, 7, 2, 2},
		{"e\u0301t\u00e9", "\u00e9t\u00e9", 0, 3, 0, 1}, // NFC: é composed
		{"", "x", 1, 0, 1, 0},
	} {
		c := Compare(tc.ref, tc.hyp)
		if c.CharErrs != tc.charErrs || c.Chars != tc.chars || c.WordErrs != tc.wordErrs || c.Words != tc.words {
			t.Errorf("Compare(%q, %q) = %+v", tc.ref, tc.hyp, c)
		}
	}
	var sum Counts
	sum.Add(Counts{CharErrs: 1, Chars: 10, WordErrs: 1, Words: 4})
	sum.Add(Counts{CharErrs: 1, Chars: 10, WordErrs: 0, Words: 4})
	if sum.CER() != 0.1 || sum.WER() != 0.125 {
		t.Errorf("CER %v WER %v", sum.CER(), sum.WER())
	}
	if (Counts{}).CER() != 0 {
		t.Error("empty CER not 0")
	}
}

func TestTesseractLang(t *testing.T) {
	for in, want := range map[string]string{"en": "eng", "cs": "ces", "de": "deu", "fr": "fra", "xx": "eng"} {
		if got := TesseractLang(in); got != want {
			t.Errorf("%s: %s", in, got)
		}
	}
	if langCode("German") != "de" || langCode("French") != "fr" {
		t.Error("langCode")
	}
}

func TestFoldLongS(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"Miniſter, warum ſie":   "Minister, warum sie",
		"Haus":                  "Haus",
		"\u1e9b":                "\u1e61", // long s with dot above
		"ſ\u0307":               "s\u0307",
		"ungeſunden ſumpﬁchten": "ungesunden sumpﬁchten",
	} {
		if got := FoldLongS(in); got != want {
			t.Errorf("FoldLongS(%q) = %q, want %q", in, got, want)
		}
	}
	// Folded, a long-s hypothesis scores like the modernised reference.
	if c := Compare("warum sie", FoldLongS("warum ſie")); c.CharErrs != 0 || c.WordErrs != 0 {
		t.Errorf("folded compare: %+v", c)
	}
}

func TestPageID(t *testing.T) {
	for _, tc := range []struct{ group, id, want string }{
		{"real-lines", "vd_bankgraf_0076_l003", "vd_bankgraf_0076"},
		{"real-lines", "vd_fiscfrie_0015_l12", "vd_fiscfrie_0015"},
		{"real-pages", "vd_bankgraf_0076", "vd_bankgraf_0076"},
		{"pages", "pub_l0001", "pub_l0001"}, // a page keeps its id
		{"lines", "pub_l0001", "pub"},
		{"real-lines", "vd_lamb_0001", "vd_lamb_0001"}, // "_l" not followed by digits only
		{"real-lines", "x_l", "x_l"},
		{"real-lines", "_l001", "_l001"},
	} {
		if got := (Sample{Group: tc.group, ID: tc.id}).PageID(); got != tc.want {
			t.Errorf("%s %s: PageID %q, want %q", tc.group, tc.id, got, tc.want)
		}
	}
}

func TestRefLines(t *testing.T) {
	for _, tc := range []struct {
		group, ref string
		want       int
	}{
		{"pages", "a\nb\n\n  \nc\n", 3},
		{"real-pages", "", 0},
		{"real-pages", "one line", 1},
		{"lines", "a line", 1},
		{"real-lines", "", 1},
	} {
		if got := (Sample{Group: tc.group, Ref: tc.ref}).RefLines(); got != tc.want {
			t.Errorf("%s %q: %d, want %d", tc.group, tc.ref, got, tc.want)
		}
	}
}

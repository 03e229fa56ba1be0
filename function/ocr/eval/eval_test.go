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

package function

import (
	"strings"
	"testing"
)

// FuzzParseINI: any config.ini text either parses or is refused with an error, never a panic;
// parsing is deterministic, and every value a section line and key line put there reads back.
func FuzzParseINI(f *testing.F) {
	for _, seed := range []string{
		"[sleep]\nseconds = 0.5\n",
		"top = 1\n[A]\nKey: v\n  continued\n; comment\n# comment\n[a]\nkey=again\n",
		"[detect]\nmodel = det.onnx\nlimit_side_len = 960\n[output]\nformats = page,alto,txt\n",
		"  indented first\n",
		"[unterminated\n",
		"=no key\n",
		"[]\n:\n[x]]\nk=v=w\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ini, err := ParseINI(text)
		if err != nil {
			return
		}
		again, err := ParseINI(text)
		if err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
		// The last "key = value" line of the text reads back from its section, unless
		// continuation lines extend it.
		sec, keySec, key, val, extended := "", "", "", "", false
		for _, raw := range strings.Split(text, "\n") {
			line := strings.TrimSpace(raw)
			switch {
			case line == "" || line[0] == '#' || line[0] == ';':
			case raw[0] == ' ' || raw[0] == '\t':
				extended = true
			case line[0] == '[':
				sec = strings.ToLower(strings.TrimSpace(line[1:strings.IndexByte(line, ']')]))
			default:
				i := strings.IndexAny(line, "=:")
				keySec, key, val = sec, strings.ToLower(strings.TrimSpace(line[:i])), strings.TrimSpace(line[i+1:])
				extended = false
			}
		}
		if key != "" && !extended && !strings.Contains(text, "\r") {
			if got := ini.String(keySec, key, "\x00absent"); got != val {
				t.Fatalf("[%s] %s = %q, read back %q", keySec, key, val, got)
			}
			if got := again.String(keySec, key, "\x00absent"); got != val {
				t.Fatalf("second parse: [%s] %s = %q", keySec, key, got)
			}
		}
		// The typed getters refuse what they cannot read, without panicking.
		for _, s := range []string{"", sec} {
			_, _ = ini.Int(s, key, 0)
			_, _ = ini.Float(s, key, 0)
			_, _ = ini.Bool(s, key, false)
			_, _ = ini.Seconds(s, key, 0)
			_ = ini.Has(s, key)
			_ = ini.HasSection(s)
		}
	})
}

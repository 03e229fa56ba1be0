package eval

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Sample is one image of the evaluation corpus with its reference text.
type Sample struct {
	// Group is "pages", "lines", "real-pages" or "real-lines".
	Group string
	ID    string
	Image string // path
	// Lang is an ISO 639-1 code: en, cs, de, fr.
	Lang string
	Ref  string
}

// Line reports whether the sample is a single line crop.
func (s Sample) Line() bool { return strings.HasSuffix(s.Group, "lines") }

// Load reads the corpus at dir (the public split's layout: pages/, lines/,
// real/pages/, real/lines/). Real scans are scored against the modernised
// transcription, as the corpus's reference figures are.
func Load(dir string) ([]Sample, error) {
	var out []Sample
	pages, err := filepath.Glob(filepath.Join(dir, "pages", "*.json"))
	if err != nil {
		return nil, err
	}
	for _, meta := range pages {
		var m struct {
			ID, Image, Language string
		}
		if err := readJSON(meta, &m); err != nil {
			return nil, err
		}
		ref, err := os.ReadFile(filepath.Join(dir, "pages", m.ID+".txt"))
		if err != nil {
			return nil, err
		}
		out = append(out, Sample{Group: "pages", ID: m.ID, Image: filepath.Join(dir, "pages", m.Image), Lang: m.Language, Ref: string(ref)})
	}
	if f, err := os.Open(filepath.Join(dir, "lines", "manifest.jsonl")); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m struct{ ID, Text, Language string }
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				f.Close()
				return nil, fmt.Errorf("lines/manifest.jsonl: %w", err)
			}
			out = append(out, Sample{Group: "lines", ID: m.ID, Image: filepath.Join(dir, "lines", m.ID+".png"), Lang: m.Language, Ref: m.Text})
		}
		f.Close()
	}
	real, _ := filepath.Glob(filepath.Join(dir, "real", "pages", "*.json"))
	for _, meta := range real {
		var m struct{ ID, Image, Language string }
		if err := readJSON(meta, &m); err != nil {
			return nil, err
		}
		ref, err := os.ReadFile(filepath.Join(dir, "real", "pages", m.ID+".norm.txt"))
		if err != nil {
			return nil, err
		}
		out = append(out, Sample{Group: "real-pages", ID: m.ID, Image: filepath.Join(dir, "real", "pages", m.Image), Lang: langCode(m.Language), Ref: string(ref)})
		lines, _ := filepath.Glob(filepath.Join(dir, "real", "lines", m.ID+"_l*.norm.gt.txt"))
		sort.Strings(lines)
		for _, l := range lines {
			ref, err := os.ReadFile(l)
			if err != nil {
				return nil, err
			}
			id := strings.TrimSuffix(filepath.Base(l), ".norm.gt.txt")
			out = append(out, Sample{Group: "real-lines", ID: id, Image: filepath.Join(dir, "real", "lines", id+".png"), Lang: langCode(m.Language), Ref: string(ref)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no corpus samples under %s", dir)
	}
	return out, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func langCode(s string) string {
	switch strings.ToLower(s) {
	case "german", "de":
		return "de"
	case "french", "fr":
		return "fr"
	case "czech", "cs":
		return "cs"
	case "english", "en":
		return "en"
	}
	return strings.ToLower(s)
}

// TesseractLang maps a sample language to tesseract's traineddata name.
func TesseractLang(lang string) string {
	switch lang {
	case "en":
		return "eng"
	case "cs":
		return "ces"
	case "de":
		return "deu"
	case "fr":
		return "fra"
	}
	return "eng"
}

// PageID is the id of the page the sample comes from: the sample's own id
// for a page, and for a line crop the id up to its last "_l" followed by
// the line number (vd_bankgraf_0076_l003 -> vd_bankgraf_0076). A line id
// without such a suffix is returned whole.
func (s Sample) PageID() string {
	if !s.Line() {
		return s.ID
	}
	i := strings.LastIndex(s.ID, "_l")
	if i <= 0 || i+2 == len(s.ID) || strings.TrimLeft(s.ID[i+2:], "0123456789") != "" {
		return s.ID
	}
	return s.ID[:i]
}

// RefLines is the number of text lines in the reference: 1 for a line
// crop, else the number of non-blank lines of Ref.
func (s Sample) RefLines() int {
	if s.Line() {
		return 1
	}
	n := 0
	for _, l := range strings.Split(s.Ref, "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

package ocr

import (
	"bytes"
	"encoding/xml"
	"errors"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// sampleLayout is a two-region page with text, words and an unread line.
func sampleLayout() *Layout {
	lay := buildLayout("scan 1&2.png", 2000, 3000, []quad{
		rect(100, 100, 800, 50, 0), rect(100, 170, 600, 50, 0),
		rect(100, 600, 900, 50, 0),
	})
	lines := lay.Lines()
	lines[0].Text, lines[0].Conf = `Fish & "chips" <1>`, 0.97
	lines[0].Words = []Word{
		{Text: "Fish", Coords: [4]image.Point{{100, 100}, {180, 100}, {180, 150}, {100, 150}}, Conf: 0.99},
		{Text: "&", Coords: [4]image.Point{{200, 100}, {220, 100}, {220, 150}, {200, 150}}, Conf: 0.9},
		{Text: `"chips"`, Coords: [4]image.Point{{240, 100}, {400, 100}, {400, 150}, {240, 150}}, Conf: 0.95},
		{Text: "<1>", Coords: [4]image.Point{{420, 100}, {480, 100}, {480, 150}, {420, 150}}, Conf: 0.8},
	}
	lines[1].Text, lines[1].Conf = "Příliš žluťoučký", 0.9
	lines[2].Conf = 0.2 // below the score: no text
	return lay
}

// elements counts the elements by local name and checks well-formedness.
func elements(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	dec := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return n
			}
			t.Fatalf("not well-formed: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
		}
	}
}

// validate checks doc against an XSD named by env (PERO_PAGE_XSD,
// PERO_ALTO_XSD) with xmllint, when both are there.
func validate(t *testing.T, env string, doc []byte) {
	t.Helper()
	xsd := os.Getenv(env)
	if xsd == "" {
		t.Logf("%s not set: schema validation skipped", env)
		return
	}
	if _, err := exec.LookPath("xmllint"); err != nil {
		t.Fatalf("%s set but xmllint missing (apt-get install libxml2-utils)", env)
	}
	p := filepath.Join(t.TempDir(), "doc.xml")
	if err := os.WriteFile(p, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("xmllint", "--noout", "--schema", xsd, p).CombinedOutput()
	if err != nil {
		t.Fatalf("xmllint --schema %s: %v\n%s", xsd, err, out)
	}
}

func TestWritePAGE(t *testing.T) {
	var b bytes.Buffer
	if err := WritePAGE(&b, sampleLayout(), testTime); err != nil {
		t.Fatal(err)
	}
	doc := b.Bytes()
	n := elements(t, doc)
	for name, want := range map[string]int{"PcGts": 1, "Metadata": 1, "Page": 1, "ReadingOrder": 1, "RegionRefIndexed": 2,
		"TextRegion": 2, "TextLine": 3, "Baseline": 3, "Word": 4} {
		if n[name] != want {
			t.Errorf("%d <%s>, want %d", n[name], name, want)
		}
	}
	s := string(doc)
	for _, want := range []string{pageNS, `imageFilename="scan 1&amp;2.png"`, `<Created>2024-05-06T07:08:09</Created>`,
		`<TextEquiv conf="0.9700">`, `Fish &amp; &#34;chips&#34; &lt;1&gt;`, "Příliš žluťoučký"} {
		if !strings.Contains(s, want) {
			t.Errorf("PAGE XML lacks %q", want)
		}
	}
	validate(t, "PERO_PAGE_XSD", doc)
}

func TestPAGERoundTrip(t *testing.T) {
	lay := sampleLayout()
	var b bytes.Buffer
	if err := WritePAGE(&b, lay, testTime); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPAGE(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got.ImageName != lay.ImageName || got.Width != 2000 || got.Height != 3000 || len(got.Regions) != 2 {
		t.Fatalf("read back %+v", got)
	}
	want, gl := lay.Lines(), got.Lines()
	if len(gl) != len(want) {
		t.Fatalf("%d lines, want %d", len(gl), len(want))
	}
	for i := range want {
		if gl[i].ID != want[i].ID || gl[i].Text != want[i].Text || len(gl[i].Coords) != 4 || len(gl[i].Baseline) != 2 {
			t.Errorf("line %d: %+v, want %+v", i, gl[i], want[i])
		}
		for k := range gl[i].Coords {
			if gl[i].Coords[k] != want[i].Coords[k] {
				t.Errorf("line %d coords %v, want %v", i, gl[i].Coords, want[i].Coords)
				break
			}
		}
	}
	if !near(gl[0].Conf, 0.97, 1e-4) {
		t.Errorf("conf %v", gl[0].Conf)
	}
}

func TestReadPAGEOrderAndVersions(t *testing.T) {
	// An older schema, regions listed against the reading order, nested
	// regions, a baseline-only line and a line with no geometry.
	doc := `<?xml version="1.0"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15">
 <Page imageFilename="a.tif" imageWidth="100" imageHeight="200">
  <ReadingOrder><OrderedGroup id="g"><RegionRefIndexed index="1" regionRef="second"/><RegionRefIndexed index="0" regionRef="first"/></OrderedGroup></ReadingOrder>
  <TextRegion id="second"><Coords points="0,0 10,0 10,10"/>
   <TextLine id="l2"><Coords points="1,1 9,1 9,9 1,9"/><TextEquiv index="1"><Unicode>alt</Unicode></TextEquiv><TextEquiv index="0" conf="0.5"><Unicode>best</Unicode></TextEquiv></TextLine>
  </TextRegion>
  <TextRegion id="first"><Coords points="0,0 10,0 10,10"/>
   <TextLine id="l1"><Coords points=""/><Baseline points="10,50 90,52"/></TextLine>
   <TextRegion id="inner"><Coords points="0,0 1,1 2,2"/><TextLine id="l3"><Coords points="5.6,5.4 7,7 8,8"/></TextLine></TextRegion>
  </TextRegion>
 </Page>
</PcGts>`
	lay, err := ReadPAGE([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range lay.Regions {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "first,second,inner" {
		t.Errorf("region order %v", ids)
	}
	lines := lay.Lines()
	if lines[0].ID != "l1" || len(lines[0].Coords) != 4 {
		t.Errorf("baseline-only line: %+v", lines[0])
	}
	if lines[1].Text != "best" || lines[1].Conf != 0.5 {
		t.Errorf("TextEquiv index 0 not chosen: %+v", lines[1])
	}
	if lines[2].Coords[0] != image.Pt(6, 5) {
		t.Errorf("decimal points: %v", lines[2].Coords)
	}
}

func TestReadPAGEBad(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":       "",
		"not xml":     "hello",
		"truncated":   `<PcGts><Page imageWidth="1"`,
		"bad points":  `<PcGts><Page><TextRegion id="r"><Coords points="1,x"/></TextRegion></Page></PcGts>`,
		"no comma":    `<PcGts><Page><TextRegion id="r"><TextLine><Coords points="12"/></TextLine></TextRegion></Page></PcGts>`,
		"huge":        `<PcGts><Page><TextRegion id="r"><Coords points="1e300,1"/></TextRegion></Page></PcGts>`,
		"wrong root":  `<alto><Page/></alto>`,
		"negative wh": `<PcGts><Page imageWidth="-5" imageHeight="3"/></PcGts>`,
	} {
		if _, err := ReadPAGE([]byte(doc)); !errors.Is(err, ErrBadPAGE) {
			t.Errorf("%s: err = %v, want ErrBadPAGE", name, err)
		}
	}
}

func TestWriteALTO(t *testing.T) {
	var b bytes.Buffer
	if err := WriteALTO(&b, sampleLayout(), testTime); err != nil {
		t.Fatal(err)
	}
	doc := b.Bytes()
	n := elements(t, doc)
	// The unread line's region has no text and is left out.
	for name, want := range map[string]int{"alto": 1, "Description": 1, "MeasurementUnit": 1, "Layout": 1, "Page": 1,
		"PrintSpace": 1, "TextBlock": 1, "TextLine": 2, "String": 5, "SP": 3} {
		if n[name] != want {
			t.Errorf("%d <%s>, want %d", n[name], name, want)
		}
	}
	s := string(doc)
	for _, want := range []string{altoNS, `CONTENT="&#34;chips&#34;"`, `WC="0.9900"`, `CONTENT="Příliš žluťoučký"`, `BASELINE="`} {
		if !strings.Contains(s, want) {
			t.Errorf("ALTO lacks %q", want)
		}
	}
	validate(t, "PERO_ALTO_XSD", doc)
}

func TestRenderNames(t *testing.T) {
	files, err := Render(sampleLayout(), "dir/scan.v2.png", []string{"page", "alto", "txt"}, testTime)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, " "); got != "dir/scan.v2_page.xml dir/scan.v2.alto.xml dir/scan.v2.txt" {
		t.Errorf("names %q", got)
	}
	if txt := string(files[2].Content); txt != "Fish & \"chips\" <1>\nPříliš žluťoučký\n" {
		t.Errorf("text %q", txt)
	}
	if _, err := Render(sampleLayout(), "a.png", []string{"pdf"}, testTime); err == nil {
		t.Error("unknown format accepted")
	}
}

func FuzzReadPAGE(f *testing.F) {
	var b bytes.Buffer
	_ = WritePAGE(&b, sampleLayout(), testTime)
	f.Add(b.Bytes())
	f.Add([]byte(`<PcGts><Page><TextRegion id="r"><TextLine><Coords points="1,2 3,4 5,6"/></TextLine></TextRegion></Page></PcGts>`))
	f.Add([]byte(`<PcGts><Page><ReadingOrder><OrderedGroup><OrderedGroupIndexed><RegionRefIndexed index="0" regionRef="x"/></OrderedGroupIndexed></OrderedGroup></ReadingOrder></Page></PcGts>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lay, err := ReadPAGE(data)
		if err != nil {
			return
		}
		// Whatever was read must write back and read again.
		var out bytes.Buffer
		if err := WritePAGE(&out, lay, testTime); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadPAGE(out.Bytes()); err != nil {
			t.Fatalf("re-read: %v\n%s", err, out.Bytes())
		}
		for _, l := range lay.Lines() {
			fitQuad(l.Coords)
		}
	})
}

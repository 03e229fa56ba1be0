package ocr

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"image"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PAGE XML, schema version 2019-07-15 (what pero-ocr writes and reads).
const (
	pageNS     = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
	pageSchema = pageNS + " " + pageNS + "/pagecontent.xsd"
	creator    = "pero-worker"
)

// WritePAGE writes lay as a PAGE XML 2019 document: TextRegions with
// TextLines (Coords, Baseline, Words, TextEquiv with confidence) in reading
// order, and a ReadingOrder listing the regions. now stamps the metadata.
func WritePAGE(w io.Writer, lay *Layout, now time.Time) error {
	var b bytes.Buffer
	ts := now.UTC().Format("2006-01-02T15:04:05")
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PcGts xmlns=\"%s\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"%s\">\n", pageNS, pageSchema)
	fmt.Fprintf(&b, "  <Metadata>\n    <Creator>%s</Creator>\n    <Created>%s</Created>\n    <LastChange>%s</LastChange>\n  </Metadata>\n", creator, ts, ts)
	fmt.Fprintf(&b, "  <Page imageFilename=\"%s\" imageWidth=\"%d\" imageHeight=\"%d\">\n", esc(lay.ImageName), max(lay.Width, 1), max(lay.Height, 1))
	if len(lay.Regions) > 0 {
		b.WriteString("    <ReadingOrder>\n      <OrderedGroup id=\"ro1\">\n")
		for i, r := range lay.Regions {
			fmt.Fprintf(&b, "        <RegionRefIndexed index=\"%d\" regionRef=\"%s\"/>\n", i, esc(r.ID))
		}
		b.WriteString("      </OrderedGroup>\n    </ReadingOrder>\n")
	}
	for _, r := range lay.Regions {
		fmt.Fprintf(&b, "    <TextRegion id=\"%s\">\n      <Coords points=\"%s\"/>\n", esc(r.ID), pointsAttr(r.Coords, 3))
		var text []string
		for _, l := range r.Lines {
			fmt.Fprintf(&b, "      <TextLine id=\"%s\">\n        <Coords points=\"%s\"/>\n", esc(l.ID), pointsAttr(l.Coords, 3))
			if len(l.Baseline) >= 2 {
				fmt.Fprintf(&b, "        <Baseline points=\"%s\"/>\n", pointsAttr(l.Baseline, 2))
			}
			if l.Text != "" {
				for wi, w := range l.Words {
					fmt.Fprintf(&b, "        <Word id=\"%s-w%d\">\n          <Coords points=\"%s\"/>\n          <TextEquiv conf=\"%s\">\n            <Unicode>%s</Unicode>\n          </TextEquiv>\n        </Word>\n",
						esc(l.ID), wi+1, pointsAttr(w.Coords[:], 3), conf(w.Conf), esc(w.Text))
				}
				fmt.Fprintf(&b, "        <TextEquiv conf=\"%s\">\n          <Unicode>%s</Unicode>\n        </TextEquiv>\n", conf(l.Conf), esc(l.Text))
				text = append(text, l.Text)
			}
			b.WriteString("      </TextLine>\n")
		}
		if len(text) > 0 {
			fmt.Fprintf(&b, "      <TextEquiv>\n        <Unicode>%s</Unicode>\n      </TextEquiv>\n", esc(strings.Join(text, "\n")))
		}
		b.WriteString("    </TextRegion>\n")
	}
	b.WriteString("  </Page>\n</PcGts>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func conf(c float64) string { return strconv.FormatFloat(clamp(c, 0, 1), 'f', 4, 64) }

// esc escapes text for XML character data and attribute values, dropping
// characters XML 1.0 cannot hold.
func esc(s string) string {
	var b strings.Builder
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return ""
	}
	return b.String()
}

// pointsAttr formats a polygon as PAGE's "x,y x,y ..." with coordinates
// clamped to be non-negative; a polygon shorter than min points repeats its
// last point (the schema wants at least two or three distinct entries, and
// a degenerate line is still better reported than dropped).
func pointsAttr(pts []image.Point, minPts int) string {
	if len(pts) == 0 {
		pts = []image.Point{{}}
	}
	var b strings.Builder
	for i := 0; i < max(len(pts), minPts); i++ {
		p := pts[min(i, len(pts)-1)]
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(max(p.X, 0)))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(max(p.Y, 0)))
	}
	return b.String()
}

// MaxPAGESize bounds the PAGE XML documents ReadPAGE accepts.
const MaxPAGESize = 64 << 20

// ErrBadPAGE wraps every failure to read a PAGE XML document.
var ErrBadPAGE = errors.New("bad PAGE XML")

// PAGE XML as read: any schema version (elements are matched by local name),
// nested regions flattened.
type xmlPcGts struct {
	XMLName xml.Name `xml:"PcGts"`
	Page    struct {
		ImageFilename string         `xml:"imageFilename,attr"`
		ImageWidth    int            `xml:"imageWidth,attr"`
		ImageHeight   int            `xml:"imageHeight,attr"`
		ReadingOrder  xmlOrder       `xml:"ReadingOrder"`
		Regions       []xmlRegion    `xml:"TextRegion"`
		Tables        []xmlContainer `xml:"TableRegion"`
	} `xml:"Page"`
}

type xmlOrder struct {
	Groups []xmlGroup `xml:",any"`
}

type xmlGroup struct {
	Refs    []xmlRef   `xml:"RegionRefIndexed"`
	Refs2   []xmlRef   `xml:"RegionRef"`
	Groups  []xmlGroup `xml:"OrderedGroupIndexed"`
	Groups2 []xmlGroup `xml:"UnorderedGroupIndexed"`
}

type xmlRef struct {
	Index  int    `xml:"index,attr"`
	Region string `xml:"regionRef,attr"`
}

type xmlContainer struct {
	Regions []xmlRegion `xml:"TextRegion"`
}

type xmlRegion struct {
	ID      string      `xml:"id,attr"`
	Coords  xmlPoints   `xml:"Coords"`
	Lines   []xmlLine   `xml:"TextLine"`
	Regions []xmlRegion `xml:"TextRegion"`
}

type xmlLine struct {
	ID       string     `xml:"id,attr"`
	Coords   xmlPoints  `xml:"Coords"`
	Baseline xmlPoints  `xml:"Baseline"`
	Equiv    []xmlEquiv `xml:"TextEquiv"`
}

type xmlPoints struct {
	Points string `xml:"points,attr"`
}

type xmlEquiv struct {
	Index   *int    `xml:"index,attr"`
	Conf    float64 `xml:"conf,attr"`
	Unicode string  `xml:"Unicode"`
}

// ReadPAGE parses a PAGE XML document (2010 to 2019 schemas) into a layout:
// text regions in the document's reading order (document order when it has
// none) with their lines' polygons, baselines and any text already there.
func ReadPAGE(data []byte) (*Layout, error) {
	if len(data) > MaxPAGESize {
		return nil, fmt.Errorf("%w: %d bytes is more than %d", ErrBadPAGE, len(data), MaxPAGESize)
	}
	var doc xmlPcGts
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPAGE, err)
	}
	p := doc.Page
	if p.ImageWidth < 0 || p.ImageHeight < 0 {
		return nil, fmt.Errorf("%w: negative image size", ErrBadPAGE)
	}
	lay := &Layout{ImageName: p.ImageFilename, Width: p.ImageWidth, Height: p.ImageHeight}
	var regions []xmlRegion
	var flatten func(rs []xmlRegion, depth int)
	flatten = func(rs []xmlRegion, depth int) {
		for _, r := range rs {
			regions = append(regions, r)
			if depth < 16 {
				flatten(r.Regions, depth+1)
			}
		}
	}
	flatten(p.Regions, 0)
	for _, t := range p.Tables {
		flatten(t.Regions, 0)
	}
	order := readingOrderOf(p.ReadingOrder)
	rank := func(r xmlRegion) int {
		if i, ok := order[r.ID]; ok {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(regions, func(a, b xmlRegion) int { return rank(a) - rank(b) })
	seen := map[string]bool{}
	for ri, r := range regions {
		reg := Region{ID: r.ID}
		if reg.ID == "" || seen[reg.ID] {
			reg.ID = fmt.Sprintf("r%d", ri+1)
		}
		seen[reg.ID] = true
		var err error
		if reg.Coords, err = parsePoints(r.Coords.Points); err != nil {
			return nil, fmt.Errorf("%w: region %s: %v", ErrBadPAGE, reg.ID, err)
		}
		for li, l := range r.Lines {
			line := Line{ID: l.ID}
			if line.ID == "" || seen[line.ID] {
				line.ID = fmt.Sprintf("%s-l%d", reg.ID, li+1)
			}
			seen[line.ID] = true
			if line.Coords, err = parsePoints(l.Coords.Points); err != nil {
				return nil, fmt.Errorf("%w: line %s: %v", ErrBadPAGE, line.ID, err)
			}
			if line.Baseline, err = parsePoints(l.Baseline.Points); err != nil {
				return nil, fmt.Errorf("%w: line %s baseline: %v", ErrBadPAGE, line.ID, err)
			}
			if len(line.Coords) < 3 && len(line.Baseline) >= 2 {
				line.Coords = polygonFromBaseline(line.Baseline)
			}
			if len(l.Equiv) > 0 {
				e := l.Equiv[0]
				for _, x := range l.Equiv {
					if x.Index != nil && *x.Index == 0 {
						e = x
					}
				}
				line.Text, line.Conf = e.Unicode, e.Conf
			}
			reg.Lines = append(reg.Lines, line)
		}
		lay.Regions = append(lay.Regions, reg)
	}
	return lay, nil
}

func readingOrderOf(o xmlOrder) map[string]int {
	order := map[string]int{}
	var walk func(g xmlGroup, depth int)
	walk = func(g xmlGroup, depth int) {
		refs := append(slices.Clone(g.Refs), g.Refs2...)
		slices.SortStableFunc(refs, func(a, b xmlRef) int { return a.Index - b.Index })
		for _, r := range refs {
			if _, ok := order[r.Region]; !ok {
				order[r.Region] = len(order)
			}
		}
		if depth < 16 {
			for _, c := range append(slices.Clone(g.Groups), g.Groups2...) {
				walk(c, depth+1)
			}
		}
	}
	for _, g := range o.Groups {
		walk(g, 0)
	}
	return order
}

// maxPoints bounds one polygon's size.
const maxPoints = 100000

// parsePoints parses "x,y x,y ..." (PAGE 2013+). Coordinates are rounded
// when written as decimals.
func parsePoints(s string) ([]image.Point, error) {
	f := strings.Fields(s)
	if len(f) > maxPoints {
		return nil, fmt.Errorf("%d points is more than %d", len(f), maxPoints)
	}
	pts := make([]image.Point, 0, len(f))
	for _, xy := range f {
		xs, ys, ok := strings.Cut(xy, ",")
		if !ok {
			return nil, fmt.Errorf("point %q is not x,y", xy)
		}
		x, err1 := strconv.ParseFloat(xs, 64)
		y, err2 := strconv.ParseFloat(ys, 64)
		if err1 != nil || err2 != nil || !finite(x) || !finite(y) || abs(x) > 1e7 || abs(y) > 1e7 {
			return nil, fmt.Errorf("point %q is not two numbers", xy)
		}
		pts = append(pts, image.Pt(int(x+0.5*sign(x)), int(y+0.5*sign(y))))
	}
	return pts, nil
}

func finite(f float64) bool { return f == f && f-f == 0 }
func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
func sign(f float64) float64 {
	if f < 0 {
		return -1
	}
	return 1
}

// polygonFromBaseline makes a line polygon from a baseline alone (PAGE
// files that carry only baselines): a band reaching 30 pixels above it and
// 10 below, about a line of 300 dpi print.
func polygonFromBaseline(bl []image.Point) []image.Point {
	const up, down = 30, 10
	out := make([]image.Point, 0, 2*len(bl))
	for _, p := range bl {
		out = append(out, image.Pt(p.X, p.Y-up))
	}
	for i := len(bl) - 1; i >= 0; i-- {
		out = append(out, image.Pt(bl[i].X, bl[i].Y+down))
	}
	return out
}

package ocr

import (
	"bytes"
	"fmt"
	"image"
	"io"
	"math"
	"strconv"
	"time"
)

const (
	altoNS     = "http://www.loc.gov/standards/alto/ns-v4#"
	altoSchema = altoNS + " http://www.loc.gov/standards/alto/v4/alto-4-2.xsd"
)

// WriteALTO writes lay as an ALTO v4 document in pixel units: a TextBlock
// per region, a TextLine per line, and String/SP per word with its
// confidence (WC). now stamps the processing step.
func WriteALTO(w io.Writer, lay *Layout, now time.Time) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alto xmlns=\"%s\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"%s\">\n", altoNS, altoSchema)
	fmt.Fprintf(&b, "  <Description>\n    <MeasurementUnit>pixel</MeasurementUnit>\n    <sourceImageInformation>\n      <fileName>%s</fileName>\n    </sourceImageInformation>\n", esc(lay.ImageName))
	fmt.Fprintf(&b, "    <OCRProcessing ID=\"ocr1\">\n      <ocrProcessingStep>\n        <processingDateTime>%s</processingDateTime>\n        <processingSoftware>\n          <softwareName>%s</softwareName>\n        </processingSoftware>\n      </ocrProcessingStep>\n    </OCRProcessing>\n  </Description>\n",
		now.UTC().Format("2006-01-02T15:04:05"), creator)
	W, H := max(lay.Width, 1), max(lay.Height, 1)
	fmt.Fprintf(&b, "  <Layout>\n    <Page ID=\"page1\" PHYSICAL_IMG_NR=\"1\" WIDTH=\"%d\" HEIGHT=\"%d\">\n      <PrintSpace HPOS=\"0\" VPOS=\"0\" WIDTH=\"%d\" HEIGHT=\"%d\">\n", W, H, W, H)
	for _, r := range lay.Regions {
		if !hasText(r) {
			continue
		}
		fmt.Fprintf(&b, "        <TextBlock ID=\"%s\" %s>\n", altoID(r.ID), altoBox(r.Coords))
		for _, l := range r.Lines {
			if l.Text == "" {
				continue
			}
			fmt.Fprintf(&b, "          <TextLine ID=\"%s\" %s BASELINE=\"%s\">\n", altoID(l.ID), altoBox(l.Coords), baselineY(l))
			words := l.Words
			if len(words) == 0 { // no positions: the whole line as one string
				var c [4]image.Point
				copy(c[:], l.Coords)
				words = []Word{{Text: l.Text, Coords: c, Conf: l.Conf}}
			}
			for wi, wd := range words {
				if wi > 0 {
					prev := bbox(words[wi-1].Coords[:])
					cur := bbox(wd.Coords[:])
					fmt.Fprintf(&b, "            <SP WIDTH=\"%d\" HPOS=\"%d\" VPOS=\"%d\"/>\n", max(cur.Min.X-prev.Max.X, 0), prev.Max.X, prev.Min.Y)
				}
				fmt.Fprintf(&b, "            <String ID=\"%s-w%d\" CONTENT=\"%s\" %s WC=\"%s\"/>\n", altoID(l.ID), wi+1, esc(wd.Text), altoBox(wd.Coords[:]), conf(wd.Conf))
			}
			b.WriteString("          </TextLine>\n")
		}
		b.WriteString("        </TextBlock>\n")
	}
	b.WriteString("      </PrintSpace>\n    </Page>\n  </Layout>\n</alto>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func hasText(r Region) bool {
	for _, l := range r.Lines {
		if l.Text != "" {
			return true
		}
	}
	return false
}

// altoID makes an xsd:ID (an NCName) of a PAGE id.
func altoID(id string) string {
	if id == "" || !(id[0] == '_' || id[0] >= 'A' && id[0] <= 'Z' || id[0] >= 'a' && id[0] <= 'z') {
		id = "id" + id
	}
	b := []byte(id)
	for i, c := range b {
		if !(c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			b[i] = '_'
		}
	}
	return string(b)
}

func bbox(pts []image.Point) image.Rectangle {
	if len(pts) == 0 {
		return image.Rectangle{}
	}
	r := image.Rectangle{Min: pts[0], Max: pts[0]}
	for _, p := range pts[1:] {
		r.Min.X, r.Min.Y = min(r.Min.X, p.X), min(r.Min.Y, p.Y)
		r.Max.X, r.Max.Y = max(r.Max.X, p.X), max(r.Max.Y, p.Y)
	}
	return r
}

func altoBox(pts []image.Point) string {
	r := bbox(pts)
	return fmt.Sprintf("HPOS=\"%d\" VPOS=\"%d\" WIDTH=\"%d\" HEIGHT=\"%d\"", max(r.Min.X, 0), max(r.Min.Y, 0), max(r.Dx(), 0), max(r.Dy(), 0))
}

func baselineY(l Line) string {
	if len(l.Baseline) == 0 {
		return strconv.Itoa(max(bbox(l.Coords).Max.Y, 0))
	}
	var s float64
	for _, p := range l.Baseline {
		s += float64(p.Y)
	}
	return strconv.Itoa(max(int(math.Round(s/float64(len(l.Baseline)))), 0))
}

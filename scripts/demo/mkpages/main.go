// Command mkpages renders the demo's sample pages: a few printed pages of plain text with
// known content, so `make demo` needs no downloads and the recognised text can be compared
// with what was printed. Text is set in the Go fonts (BSD licence, part of golang.org/x/image).
//
// Usage: go run ./scripts/demo/mkpages -out DIR
package main

import (
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"log"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

type page struct {
	name    string
	columns [][]string // each column's lines, top to bottom
	title   string
}

var pages = []page{
	{
		name:  "letter",
		title: "A letter to the archive",
		columns: [][]string{{
			"Dear colleagues,",
			"",
			"thank you for sending the boxes of parish registers.",
			"We have scanned the first forty volumes and the",
			"remaining ones will follow before the end of the month.",
			"Every page is processed twice: first the text lines",
			"are found, then each line is read and written out",
			"as PAGE XML, ALTO and plain text for the catalogue.",
			"",
			"With kind regards,",
			"the digitisation team",
		}},
	},
	{
		name:  "columns",
		title: "Notes on the reading order",
		columns: [][]string{
			{
				"A page with two columns",
				"must be read down the left",
				"column first and only then",
				"down the right one.",
				"Reading straight across the",
				"gutter mixes the sentences",
				"of both columns together.",
			},
			{
				"The detector finds every",
				"line on its own, and the",
				"layout step groups lines",
				"into columns before they",
				"are put in reading order.",
				"This keeps each sentence",
				"whole in the final text.",
			},
		},
	},
	{
		name:  "inventory",
		title: "Inventory of the map room",
		columns: [][]string{{
			"Shelf 12: maps of the river valley, 1820 to 1868.",
			"Shelf 13: town plans, survey books and field notes.",
			"Shelf 14: letters of the land office, in 9 folders.",
			"Shelf 15: photographs of the old mill and the bridge.",
			"Total: 418 items, of which 37 need conservation.",
		}},
	},
}

func main() {
	out := flag.String("out", "testdata/demo", "directory for the pages (<name>.png and <name>.txt)")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	f, err := opentype.Parse(goregular.TTF)
	if err != nil {
		log.Fatal(err)
	}
	body, err := opentype.NewFace(f, &opentype.FaceOptions{Size: 30, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		log.Fatal(err)
	}
	head, err := opentype.NewFace(f, &opentype.FaceOptions{Size: 42, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pages {
		if err := render(*out, p, body, head); err != nil {
			log.Fatal(err)
		}
	}
}

func render(dir string, p page, body, head font.Face) error {
	const w, h, margin, lineH = 1240, 1000, 90, 48
	img := image.NewGray(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	ink := image.NewUniform(color.Black)
	text := []string{p.title}
	d := &font.Drawer{Dst: img, Src: ink, Face: head, Dot: fixed.P(margin, margin+30)}
	d.DrawString(p.title)
	colW := (w - 2*margin) / len(p.columns)
	for c, lines := range p.columns {
		y := margin + 30 + 2*lineH
		for _, l := range lines {
			if l != "" {
				d := &font.Drawer{Dst: img, Src: ink, Face: body, Dot: fixed.P(margin+c*colW, y)}
				d.DrawString(l)
				text = append(text, l)
			}
			y += lineH
		}
	}
	f, err := os.Create(filepath.Join(dir, p.name+".png"))
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(filepath.Join(dir, p.name+".png"))
	return os.WriteFile(filepath.Join(dir, p.name+".txt"), []byte(strings.Join(text, "\n")+"\n"), 0o644)
}

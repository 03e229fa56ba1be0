package ocr

import (
	"math"
	"slices"
	"testing"
)

// rect makes a line box at (x, y) of size w x h, turned by deg about the page origin.
func rect(x, y, w, h, deg float64) quad {
	th := deg * math.Pi / 180
	c, s := math.Cos(th), math.Sin(th)
	q := quad{{x, y}, {x + w, y}, {x + w, y + h}, {x, y + h}}
	for i := range q {
		q[i] = q[i].rot(c, s)
	}
	return q
}

// flat lists the line indices in reading order.
func flat(regions [][]int) []int {
	var out []int
	for _, r := range regions {
		out = append(out, r...)
	}
	return out
}

func TestReadingOrderTwoColumns(t *testing.T) {
	for _, deg := range []float64{0, 2, -2} {
		var quads []quad
		want := []int{}
		add := func(q quad) int { quads = append(quads, q); return len(quads) - 1 }
		// Built in a scrambled order: right column first, footer, heading, left column.
		right := []int{}
		for i := range 5 {
			right = append(right, add(rect(1300, 500+float64(i)*60, 1000, 45, deg)))
		}
		footer := add(rect(1100, 3300, 200, 40, deg))
		heading := add(rect(700, 300, 1000, 70, deg))
		left := []int{}
		for i := range 6 {
			w := 1000.0
			if i == 5 {
				w = 300 // a paragraph's last line
			}
			left = append(left, add(rect(150, 500+float64(i)*60, w, 45, deg)))
		}
		want = append(append(append(append(want, heading), left...), right...), footer)
		if got := flat(readingOrder(quads)); !slices.Equal(got, want) {
			t.Errorf("%v°: order %v, want %v", deg, got, want)
		}
	}
}

func TestReadingOrderSingleColumn(t *testing.T) {
	var quads []quad
	for i := range 10 {
		w := 1800.0 - float64(i%3)*400 // ragged right
		quads = append(quads, rect(200, 300+float64(9-i)*70, w, 50, 0))
	}
	// A catch-word (right) and a signature mark (middle) on the last row.
	quads = append(quads, rect(1700, 1100, 200, 50, 0), rect(900, 1105, 150, 45, 0))
	got := flat(readingOrder(quads))
	want := []int{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 10}
	if !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

func TestReadingOrderParagraphs(t *testing.T) {
	quads := []quad{rect(100, 100, 1000, 40, 0), rect(100, 150, 1000, 40, 0), rect(100, 400, 1000, 40, 0)}
	regions := readingOrder(quads)
	if len(regions) != 2 || !slices.Equal(flat(regions), []int{0, 1, 2}) {
		t.Errorf("regions %v, want [[0 1] [2]]", regions)
	}
	if readingOrder(nil) != nil {
		t.Error("no lines, regions")
	}
}

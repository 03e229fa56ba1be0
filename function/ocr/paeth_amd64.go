//go:build !purego

package ocr

// paethPairRows is paethPair's loop from pixel 2 of r1 (pixel 1 of r2) to
// the end of r1 (the last pixel of r2 but one), over rows n bytes long:
// a1 and a2 are the unfiltered pixels 1 of r1 and 0 of r2. It keeps every
// value the loop needs in registers, where the compiled loop keeps some
// on the stack, and runs about 1.6 times as fast. Implemented in
// paeth_amd64.s.
//
//go:noescape
func paethPairRows(prev, r1, r2 *byte, n int, a1, a2 int)

// paethPair unfilters two consecutive Paeth rows of one byte per pixel:
// r1 below prev, r2 below r1. Pixel x of r2 is done beside pixel x+1 of r1,
// whose chain it does not depend on.
func paethPair(prev, r1, r2 []byte) {
	n := len(r1)
	if n < 3 {
		paethPairGo(prev, r1, r2)
		return
	}
	prev, r2 = prev[:n], r2[:n]
	// Pixel 0 of r1 and pixel 1 of r1 beside pixel 0 of r2, whose left and
	// upper left are zero: both predictors are the pixels above.
	r1[0] += prev[0]
	r1[1] = uint8(paethAdd(int(r1[0]), int(prev[1]), int(prev[0]), r1[1]))
	r2[0] += r1[0]
	paethPairRows(&prev[0], &r1[0], &r2[0], n, int(r1[1]), int(r2[0]))
	r2[n-1] = uint8(paethAdd(int(r2[n-2]), int(r1[n-1]), int(r1[n-2]), r2[n-1]))
}

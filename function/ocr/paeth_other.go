//go:build !amd64 || purego

package ocr

// paethPair unfilters two consecutive Paeth rows of one byte per pixel:
// r1 below prev, r2 below r1. Pixel x of r2 is done beside pixel x+1 of r1,
// whose chain it does not depend on.
func paethPair(prev, r1, r2 []byte) { paethPairGo(prev, r1, r2) }

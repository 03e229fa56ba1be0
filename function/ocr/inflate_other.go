//go:build !amd64 || purego

package ocr

// inflateFastOK says inflateFast decodes here: it does not, the Go loop
// does all the decoding.
const inflateFastOK = false

func inflateFast(in *byte, inLimit, pos int, bitbuf uint64, n uint, out *byte, outLimit, op int,
	fast *uint32, lmask uint64, dt *uint32, dmask uint64, tabs *[59]uint32) (pos2 int, bitbuf2 uint64, n2 uint, op2 int) {
	return pos, bitbuf, n, op
}

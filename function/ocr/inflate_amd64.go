//go:build !purego

package ocr

// inflateFastOK says inflateFast decodes here.
const inflateFastOK = true

// inflateFast is the inner loop of inflater.codes in assembly, which holds
// the bit buffer, the positions and the tables in registers (the compiled
// loop keeps some of them on the stack). It decodes literals, one or two
// a lookup in fast (huffman.fastTable), and matches whose codes sit in the
// first-level tables, refilling the bit buffer
// eight bytes at a time, while pos <= inLimit (eight input bytes are
// there to read) and op <= outLimit (a longest match and the seven bytes
// an eight-byte copy may write past it fit in out). It returns at the end
// of the block, at a longer code or at anything invalid, without taking
// that code: the Go loop takes it, with its checks and errors. tabs holds
// the base and the extra bits (base | extra<<16) of the 29 length and then
// the 30 distance symbols. Implemented in inflate_amd64.s.
//
//go:noescape
func inflateFast(in *byte, inLimit, pos int, bitbuf uint64, n uint, out *byte, outLimit, op int,
	fast *uint32, lmask uint64, dt *uint32, dmask uint64, tabs *[59]uint32) (pos2 int, bitbuf2 uint64, n2 uint, op2 int)

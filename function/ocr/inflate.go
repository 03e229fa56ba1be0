package ocr

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"sync"
)

// inflate decompresses the raw deflate stream in (RFC 1951) into out,
// which must be exactly as long as the decompressed data: a PNG says how
// many bytes its rows take, so the whole image inflates in one pass into
// its final buffer, with matches copied inside it. compress/flate goes
// through a 32 KiB window and an io.Reader, which costs two to three times
// as much on scanned pages. The stream must end (its final block) exactly
// at the end of out.
//
// The decoder reads from a 64-bit bit buffer refilled eight bytes at a
// time, and looks codes up in a table indexed by the next 11 (literal and
// length) or 8 (distance) bits, with second-level tables for longer codes.
func inflate(in, out []byte) error {
	d := inflater{br: bitReader{in: in}, out: out}
	return d.run()
}

var (
	errInflateShort   = errors.New("image data ends early")
	errInflateLong    = errors.New("more image data than pixels")
	errInflateCorrupt = errors.New("corrupt deflate data")
)

// bitReader reads the bits of in, least significant first.
type bitReader struct {
	in   []byte
	pos  int    // next byte of in to load
	bits uint64 // buffered bits, the next one lowest
	n    uint   // number of buffered bits
	over int    // zero bytes loaded past the end of in
}

// refill tops the buffer up to at least 56 bits. Past the end of the input
// it loads zeros and counts them, so that a truncated stream is found by
// consumed() rather than by a bounds check in every decode.
func (b *bitReader) refill() {
	if b.pos+8 <= len(b.in) {
		b.bits |= binary.LittleEndian.Uint64(b.in[b.pos:]) << b.n
		k := (63 - b.n) >> 3
		b.pos += int(k)
		b.n += k * 8
		return
	}
	for b.n <= 56 {
		if b.pos < len(b.in) {
			b.bits |= uint64(b.in[b.pos]) << b.n
			b.pos++
		} else {
			b.over++
		}
		b.n += 8
	}
}

// take consumes and returns the next k bits (k <= n).
func (b *bitReader) take(k uint) uint32 {
	v := uint32(b.bits & (1<<k - 1))
	b.bits >>= k
	b.n -= k
	return v
}

// overrun reports whether more bits were consumed than the input holds.
func (b *bitReader) overrun() bool { return b.over*8 > int(b.n) }

// alignBytes drops the bits up to the next byte boundary and gives the
// whole bytes still buffered back to the input, for a stored block.
func (b *bitReader) alignBytes() bool {
	b.take(b.n % 8)
	back := int(b.n/8) - b.over
	if back < 0 {
		return false
	}
	b.pos -= back
	b.bits, b.n, b.over = 0, 0, 0
	return true
}

// A table entry: the symbol (or a second-level table's offset) in the top
// 16 bits, the code length (or the second-level table's index bits) in the
// low 8, and the link flag. Entries no code reaches hold the symbol
// badSymbol, which every symbol range check refuses.
const (
	entryLink = 1 << 8
	badSymbol = 0xffff
	badEntry  = badSymbol<<16 | 1
)

// huffman is a decoding table for one canonical Huffman code.
type huffman struct {
	table   []uint32
	primary uint // index bits of the first-level table
}

// build fills h for the code with the given lengths (0: symbol unused), as
// compress/flate accepts them: a complete code, an empty one, or a single
// code of length 1.
func (h *huffman) build(lengths []uint8, primary uint) bool {
	var count [16]int
	for _, l := range lengths {
		count[l]++
	}
	count[0] = 0
	left, codes := 1, 0
	maxLen := uint(0)
	for l := 1; l < 16; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return false // over-subscribed
		}
		if count[l] > 0 {
			maxLen = uint(l)
		}
		codes += count[l]
	}
	if left > 0 && codes > 1 || codes == 1 && maxLen != 1 {
		return false // incomplete
	}
	h.primary = min(primary, max(maxLen, 1))
	size := 1 << h.primary
	h.table = h.table[:0]
	for range size {
		h.table = append(h.table, badEntry)
	}
	var next [16]uint32
	code := uint32(0)
	for l := 1; l < 16; l++ {
		code = (code + uint32(count[l-1])) << 1
		next[l] = code
	}
	// Second-level tables: for each first-level index that longer codes
	// start with, the longest of them sets the table's size.
	var subBits []uint8
	if maxLen > h.primary {
		subBits = make([]uint8, size)
		nx := next
		for _, l := range lengths {
			if uint(l) <= h.primary {
				if l > 0 {
					nx[l]++
				}
				continue
			}
			rev := reverseBits(nx[l], uint(l))
			nx[l]++
			p := rev & uint32(size-1)
			subBits[p] = max(subBits[p], l-uint8(h.primary))
		}
		for p, sb := range subBits {
			if sb == 0 {
				continue
			}
			off := len(h.table)
			h.table[p] = uint32(off)<<16 | entryLink | uint32(sb)
			for range 1 << sb {
				h.table = append(h.table, badEntry)
			}
		}
	}
	for sym, l := range lengths {
		if l == 0 {
			continue
		}
		rev := reverseBits(next[l], uint(l))
		next[l]++
		if uint(l) <= h.primary {
			e := uint32(sym)<<16 | uint32(l)
			for i := rev; i < uint32(size); i += 1 << l {
				h.table[i] = e
			}
			continue
		}
		link := h.table[rev&uint32(size-1)]
		off, sb := link>>16, uint(link&0xff)
		sl := uint(l) - h.primary
		e := uint32(sym)<<16 | uint32(sl)
		for i := rev >> h.primary; i < 1<<sb; i += 1 << sl {
			h.table[off+i] = e
		}
	}
	return true
}

func reverseBits(code uint32, n uint) uint32 {
	return uint32(bits.Reverse16(uint16(code))) >> (16 - n)
}

// pairLiteral marks a literal entry of a fast table (fastTable): one or two
// literals, the first in bits 16-23 and the second in bits 24-31,
// pairTwo set when there are two, and the bits both take in the low 8.
const (
	pairTwo     = 1 << 9
	pairLiteral = 1 << 10
)

// fastTable fills dst with inflateFast's table for the literal and length
// code h, indexed as its first-level table. Where the first code is a
// first-level literal, the entry gives it and, when the remaining bits
// hold a whole second literal code, that one too: scanned pages are
// mostly literals of four or five bits, so most lookups give two. Other
// entries are h's own (lengths, the end of the block, links to longer
// codes), which the fast loop reads as the Go loop does.
func (h *huffman) fastTable(dst []uint32) []uint32 {
	dst = dst[:0]
	for i := range uint32(1) << h.primary {
		e := h.table[i]
		if e&entryLink != 0 || e>>16 >= 256 {
			dst = append(dst, e)
			continue
		}
		l := e & 0xff
		p := e>>16<<16 | pairLiteral | l
		// The entry at the remaining bits (the bits above them unknown,
		// zero here) is the second code's when that code fits in them:
		// every entry is repeated for all values of the bits above it.
		if e2 := h.table[i>>l]; e2&entryLink == 0 && e2>>16 < 256 && e2&0xff <= uint32(h.primary)-l {
			p = e>>16<<16 | e2>>16<<24 | pairLiteral | pairTwo | (l + e2&0xff)
		}
		dst = append(dst, p)
	}
	return dst
}

// decode reads one symbol; the buffer must hold at least 15 bits.
func (h *huffman) decode(b *bitReader) uint32 {
	sym, k := lookup(h.table, h.primary, b.bits)
	b.bits >>= k
	b.n -= k
	return sym
}

// lookup finds the code at the front of bits in table (first-level index
// bits primary): its symbol and its length, which the caller consumes.
// It works on values so that the decoding loop keeps its bit buffer in
// registers.
func lookup(table []uint32, primary uint, bits uint64) (sym uint32, length uint) {
	e := table[bits&(1<<primary-1)]
	if e&entryLink != 0 {
		e = table[e>>16+uint32(bits>>primary&(1<<(e&0xff)-1))]
		length = primary
	}
	return e >> 16, length + uint(e&0xff)
}

var (
	lengthBase  = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	// The order in which a dynamic block lists the code length code's lengths.
	clenOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// fastTabs are inflateFast's length and distance tables: base | extra<<16
// of the 29 length symbols, then of the 30 distance symbols.
var fastTabs = func() (t [59]uint32) {
	for i := range 29 {
		t[i] = uint32(lengthBase[i]) | uint32(lengthExtra[i])<<16
	}
	for i := range 30 {
		t[29+i] = uint32(distBase[i]) | uint32(distExtra[i])<<16
	}
	return t
}()

// fastSlack is how much room inflateFast needs in out: a longest match
// and the seven bytes an eight-byte copy may write past it, rounded up.
const fastSlack = 258 + 8

const (
	litPrimary  = 11
	distPrimary = 8
)

// fixedTables are the codes of fixed-Huffman blocks (RFC 1951, 3.2.6).
var fixedTables = sync.OnceValues(func() (*huffman, *huffman) {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	var d [32]uint8 // 30 and 31 have codes but no meaning
	for i := range d {
		d[i] = 5
	}
	lit, dist := &huffman{}, &huffman{}
	if !lit.build(l[:], litPrimary) || !dist.build(d[:], distPrimary) {
		panic("inflate: bad fixed code")
	}
	return lit, dist
})

// fixedFast is inflateFast's table of the fixed literal and length code.
var fixedFast = sync.OnceValue(func() []uint32 {
	lit, _ := fixedTables()
	return lit.fastTable(nil)
})

type inflater struct {
	br        bitReader
	out       []byte
	op        int
	lit, dist huffman  // a dynamic block's codes, reused block to block
	fast      []uint32 // and inflateFast's table of lit
	clen      huffman
	lens      [286 + 30]uint8
}

func (d *inflater) run() error {
	br := &d.br
	for {
		br.refill()
		final := br.take(1)
		var err error
		switch br.take(2) {
		case 0:
			err = d.stored()
		case 1:
			lit, dist := fixedTables()
			var fast []uint32
			if inflateFastOK {
				fast = fixedFast()
			}
			err = d.codes(lit, dist, fast)
		case 2:
			if err = d.dynamic(); err == nil {
				if inflateFastOK {
					d.fast = d.lit.fastTable(d.fast)
				}
				err = d.codes(&d.lit, &d.dist, d.fast)
			}
		default:
			err = errInflateCorrupt
		}
		if err != nil {
			return err
		}
		if br.overrun() {
			return errInflateShort
		}
		if final == 1 {
			break
		}
	}
	if d.op != len(d.out) {
		return errInflateShort
	}
	return nil
}

func (d *inflater) stored() error {
	br := &d.br
	if !br.alignBytes() {
		return errInflateShort
	}
	if br.pos+4 > len(br.in) {
		return errInflateShort
	}
	n := int(binary.LittleEndian.Uint16(br.in[br.pos:]))
	if binary.LittleEndian.Uint16(br.in[br.pos+2:]) != ^uint16(n) {
		return errInflateCorrupt
	}
	br.pos += 4
	if br.pos+n > len(br.in) {
		return errInflateShort
	}
	if d.op+n > len(d.out) {
		return errInflateLong
	}
	copy(d.out[d.op:], br.in[br.pos:br.pos+n])
	d.op += n
	br.pos += n
	return nil
}

// dynamic reads a dynamic block's code definitions into d.lit and d.dist.
func (d *inflater) dynamic() error {
	br := &d.br
	br.refill()
	nlit := int(br.take(5)) + 257
	ndist := int(br.take(5)) + 1
	nclen := int(br.take(4)) + 4
	if nlit > 286 || ndist > 30 {
		return errInflateCorrupt
	}
	var cl [19]uint8
	for i := range nclen {
		if br.n < 3 {
			br.refill()
		}
		cl[clenOrder[i]] = uint8(br.take(3))
	}
	if !d.clen.build(cl[:], 7) {
		return errInflateCorrupt
	}
	lens := d.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if br.n < 16 {
			br.refill()
		}
		sym := d.clen.decode(br)
		var rep int
		var val uint8
		switch {
		case sym < 16:
			lens[i] = uint8(sym)
			i++
			continue
		case sym == 16:
			if i == 0 {
				return errInflateCorrupt
			}
			rep, val = 3+int(br.take(2)), lens[i-1]
		case sym == 17:
			rep = 3 + int(br.take(3))
		case sym == 18:
			rep = 11 + int(br.take(7))
		default:
			return errInflateCorrupt
		}
		if i+rep > len(lens) {
			return errInflateCorrupt
		}
		for range rep {
			lens[i] = val
			i++
		}
	}
	if br.overrun() {
		return errInflateShort
	}
	if !d.lit.build(lens[:nlit], litPrimary) || !d.dist.build(lens[nlit:], distPrimary) {
		return errInflateCorrupt
	}
	return nil
}

// codes decodes a Huffman-coded block up to its end-of-block symbol. The
// bit buffer lives in local variables here (through the inflater's pointer
// every shift would be a store and a load), the refill is written out and
// the table lookups go through lookup, which works on values; a literal is
// followed by a second one without a refill when its code is short, which
// is most of a scanned page.
func (d *inflater) codes(lit, dist *huffman, fast []uint32) error {
	in, pos, over := d.br.in, d.br.pos, d.br.over
	bitbuf, n := d.br.bits, d.br.n
	out, op := d.out, d.op
	lt, lmask, lp := lit.table, uint64(1)<<lit.primary-1, lit.primary
	dt, dp := dist.table, dist.primary
	err := errInflateCorrupt
	dmask := uint64(1)<<dp - 1
decode:
	for {
		if inflateFastOK && pos+8 <= len(in) && op+fastSlack <= len(out) {
			pos, bitbuf, n, op = inflateFast(&in[0], len(in)-8, pos, bitbuf, n, &out[0], len(out)-fastSlack, op,
				&fast[0], lmask, &dt[0], dmask, &fastTabs)
		}
		// 56 buffered bits hold a whole length and distance: at most
		// 15+5+15+13 bits.
		if n < 48 {
			if pos+8 <= len(in) {
				bitbuf |= binary.LittleEndian.Uint64(in[pos:]) << n
				k := (63 - n) >> 3
				pos += int(k)
				n += k * 8
			} else {
				for n <= 56 {
					if pos < len(in) {
						bitbuf |= uint64(in[pos]) << n
						pos++
					} else {
						over++
					}
					n += 8
				}
				if over > 8 {
					err = errInflateShort
					break
				}
			}
		}
		sym, k := lookup(lt, lp, bitbuf)
		bitbuf >>= k
		n -= k
		if sym < 256 {
			if op >= len(out) {
				err = errInflateLong
				break
			}
			out[op] = byte(sym)
			op++
			// At least 33 bits are left (48 or more before a code of at
			// most 15): room for three more literals whose codes sit in
			// the first-level table, at most 11 bits each (a link entry's
			// offset puts it above 256<<16).
			for range 3 {
				e := lt[bitbuf&lmask]
				if e >= 256<<16 {
					break
				}
				if op >= len(out) {
					err = errInflateLong
					break decode
				}
				bitbuf >>= e & 0xff
				n -= uint(e & 0xff)
				out[op] = byte(e >> 16)
				op++
			}
			continue
		}
		if sym == 256 {
			err = nil
			break
		}
		sym -= 257
		if sym >= 29 {
			break
		}
		eb := lengthExtra[sym]
		length := int(lengthBase[sym]) + int(bitbuf&(1<<eb-1))
		bitbuf >>= eb
		n -= uint(eb)
		ds, k := lookup(dt, dp, bitbuf)
		bitbuf >>= k
		n -= k
		if ds >= 30 {
			break
		}
		eb = distExtra[ds]
		dd := int(distBase[ds]) + int(bitbuf&(1<<eb-1))
		bitbuf >>= eb
		n -= uint(eb)
		if dd > op {
			break
		}
		end := op + length
		if end > len(out) {
			err = errInflateLong
			break
		}
		src := op - dd
		if dd >= 8 && length <= 64 && end+8 <= len(out) {
			// Short matches eight bytes at a time: each word read lies
			// before the one written, and the at most seven bytes written
			// past the end are rewritten by what follows.
			for ; op < end; op, src = op+8, src+8 {
				binary.LittleEndian.PutUint64(out[op:], binary.LittleEndian.Uint64(out[src:]))
			}
			op = end
			continue
		}
		if dd == 1 && end+8 <= len(out) {
			// A run of one byte (a row of paper under the Up, Paeth or
			// Sub filter is a run of zeros), set eight bytes at a time;
			// the bytes written past the end are rewritten as above.
			v := flat8(int(out[src]))
			for ; op < end; op += 8 {
				binary.LittleEndian.PutUint64(out[op:], v)
			}
			op = end
			continue
		}
		// Overlapping copies (a run: the distance shorter than the length)
		// copy what is already written, doubling each time.
		for op < end {
			op += copy(out[op:end], out[src:op])
		}
	}
	d.br.pos, d.br.over, d.br.bits, d.br.n = pos, over, bitbuf, n
	d.op = op
	return err
}

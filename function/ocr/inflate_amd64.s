//go:build !purego

#include "textflag.h"

// LITERAL decodes one or two more literals when the next code is a
// first-level literal, else goes on at notlit with its entry in BX. Both
// bytes are written; a lone literal's second is overwritten later. BX, CX
// clobbered.
#define LITERAL(notlit) \
	MOVQ R12, BX; \
	ANDQ R15, BX; \
	MOVL (R14)(BX*4), BX; \
	TESTL $0x400, BX; \
	JZ   notlit; \
	MOVQ BX, CX; \
	SHRQ CX, R12; \
	MOVBQZX BL, CX; \
	SUBQ CX, R13; \
	MOVL BX, CX; \
	SHRL $16, CX; \
	MOVW CX, (DI)(R11*1); \
	SHRL $9, BX; \
	ANDL $1, BX; \
	LEAQ 1(R11)(BX*1), R11

// func inflateFast(in *byte, inLimit, pos int, bitbuf uint64, n uint, out *byte, outLimit, op int, fast *uint32, lmask uint64, dt *uint32, dmask uint64, tabs *[59]uint32) (pos2 int, bitbuf2 uint64, n2 uint, op2 int)
TEXT ·inflateFast(SB), NOSPLIT, $24-136
	MOVQ in+0(FP), SI
	MOVQ inLimit+8(FP), R8
	MOVQ pos+16(FP), R9
	MOVQ bitbuf+24(FP), R12
	MOVQ n+32(FP), R13
	MOVQ out+40(FP), DI
	MOVQ outLimit+48(FP), R10
	MOVQ op+56(FP), R11
	MOVQ fast+64(FP), R14
	MOVQ lmask+72(FP), R15
	MOVQ dt+80(FP), DX

loop:
	CMPQ R9, R8
	JGT  exit
	CMPQ R11, R10
	JGT  exit

	// Refill to 56-63 bits: the bytes from pos, shifted above the bits
	// held. Bits above n already hold the same bytes, so ORing them again
	// changes nothing.
	MOVQ (SI)(R9*1), AX
	MOVQ R13, CX
	SHLQ CX, AX
	ORQ  AX, R12
	MOVQ $63, AX
	SUBQ R13, AX
	SHRQ $3, AX
	ADDQ AX, R9
	ORQ  $56, R13

	// Up to four lookups of literals: each takes at most 11 of the 56
	// bits.
	LITERAL(symbol)
	LITERAL(loop)
	LITERAL(loop)
	LITERAL(loop)
	JMP loop

symbol:
	// BX is the entry of a code that is not a first-level literal.
	// Lengths are decoded here; second-level codes, the end of the block
	// and anything invalid go back to the caller unconsumed.
	TESTL $0x100, BX
	JNZ   exit
	MOVL  BX, AX
	SHRL  $16, AX
	CMPL  AX, $257
	JB    exit
	CMPL  AX, $285
	JA    exit

	// From here the bits consumed are put back if the distance is not
	// one this path decodes.
	MOVQ R12, 0(SP)
	MOVQ R13, 8(SP)
	MOVQ BX, CX
	SHRQ CX, R12
	MOVBQZX BL, BX
	SUBQ BX, R13
	SUBL $257, AX
	MOVQ tabs+96(FP), CX
	MOVL (CX)(AX*4), AX // length base | extra bits << 16
	MOVQ AX, CX
	SHRQ $16, CX
	MOVL $1, BX
	SHLQ CX, BX
	DECQ BX
	ANDQ R12, BX
	SHRQ CX, R12
	SUBQ CX, R13
	MOVWQZX AX, AX
	ADDQ BX, AX
	MOVQ AX, 16(SP) // length

	MOVQ dmask+88(FP), BX
	ANDQ R12, BX
	MOVL (DX)(BX*4), BX
	TESTL $0x100, BX
	JNZ   rewind
	CMPL  BX, $0x1e0000 // distance symbols 30 and up are invalid
	JAE   rewind
	MOVQ BX, CX
	SHRQ CX, R12
	MOVBQZX BL, CX
	SUBQ CX, R13
	SHRL $16, BX
	MOVQ tabs+96(FP), CX
	MOVL 116(CX)(BX*4), BX // distance base | extra bits << 16
	MOVQ BX, CX
	SHRQ $16, CX
	MOVL $1, AX
	SHLQ CX, AX
	DECQ AX
	ANDQ R12, AX
	SHRQ CX, R12
	SUBQ CX, R13
	MOVWQZX BX, BX
	ADDQ AX, BX // distance
	CMPQ BX, R11
	JA   rewind

	MOVQ 16(SP), AX
	ADDQ R11, AX // end of the match
	MOVQ R11, CX
	SUBQ BX, CX // its source
	CMPQ BX, $8
	JB   near

	// Eight bytes at a time: each word read lies before the one written;
	// up to seven bytes past the end are written and later overwritten.
copy8:
	MOVQ (DI)(CX*1), BX
	MOVQ BX, (DI)(R11*1)
	ADDQ $8, CX
	ADDQ $8, R11
	CMPQ R11, AX
	JB   copy8
	MOVQ AX, R11
	JMP  loop

near:
	CMPQ BX, $1
	JNE  bytes
	// A run of one byte, eight at a time.
	MOVBQZX (DI)(CX*1), BX
	MOVQ $0x0101010101010101, CX
	IMULQ CX, BX
run8:
	MOVQ BX, (DI)(R11*1)
	ADDQ $8, R11
	CMPQ R11, AX
	JB   run8
	MOVQ AX, R11
	JMP  loop

bytes:
	MOVBLZX (DI)(CX*1), BX
	MOVB BX, (DI)(R11*1)
	INCQ CX
	INCQ R11
	CMPQ R11, AX
	JB   bytes
	JMP  loop

rewind:
	MOVQ 0(SP), R12
	MOVQ 8(SP), R13

exit:
	MOVQ R9, pos2+104(FP)
	MOVQ R12, bitbuf2+112(FP)
	MOVQ R13, n2+120(FP)
	MOVQ R11, op2+128(FP)
	RET

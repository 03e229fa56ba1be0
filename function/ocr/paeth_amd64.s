//go:build !purego

#include "textflag.h"

// PAETH adds the Paeth predictor of left a, above at b(SI)(BX*1) and upper
// left at c(SI)(BX*1) to the byte at x(DI)(BX*1), stores it there and
// leaves it in a. Clobbers AX, R9, R11-R15.
#define PAETH(a, b, c, x) \
	MOVBQZX b, R9; \
	MOVBQZX c, R11; \
	MOVQ R9, R12; \
	SUBQ R11, R12; \
	MOVQ a, R13; \
	SUBQ R11, R13; \
	LEAQ (R12)(R13*1), AX; \
	MOVQ R12, R14; \
	NEGQ R14; \
	CMOVQLT R12, R14; \
	MOVQ R13, R15; \
	NEGQ R15; \
	CMOVQLT R13, R15; \
	MOVQ AX, R12; \
	NEGQ R12; \
	CMOVQLT AX, R12; \
	CMPQ R15, R12; \
	CMOVQLE R9, R11; \
	CMOVQGT R12, R15; \
	CMPQ R14, R15; \
	CMOVQLE a, R11; \
	MOVBQZX x, AX; \
	ADDQ AX, R11; \
	MOVB R11, x; \
	MOVBQZX R11B, a

// PAIR unfilters pixel BX+o of r1 (DI) below prev (SI) and pixel BX+o-1
// of r2 (DX) below r1.
#define PAIR(o, om1, om2) \
	PAETH(R8, o(SI)(BX*1), om1(SI)(BX*1), o(DI)(BX*1)); \
	PAETH(R10, om1(DI)(BX*1), om2(DI)(BX*1), om1(DX)(BX*1))

// func paethPairRows(prev, r1, r2 *byte, n int, a1, a2 int)
TEXT ·paethPairRows(SB), NOSPLIT, $0-48
	MOVQ prev+0(FP), SI
	MOVQ r1+8(FP), DI
	MOVQ r2+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ a1+32(FP), R8
	MOVQ a2+40(FP), R10
	MOVQ $2, BX

loop:
	CMPQ BX, CX
	JGE  done
	LEAQ 8(BX), AX
	CMPQ AX, CX
	JG   single

	// Eight pixels of paper: left pixels equal, nothing filtered, the
	// row above flat at their level.
	CMPQ R8, R10
	JNE  block
	MOVQ (DI)(BX*1), AX
	TESTQ AX, AX
	JNZ  block
	MOVQ -1(DX)(BX*1), AX
	TESTQ AX, AX
	JNZ  block
	MOVQ $0x0101010101010101, R12
	IMULQ R8, R12
	CMPQ R12, (SI)(BX*1)
	JNE  block
	MOVQ R12, (DI)(BX*1)
	MOVQ R12, -1(DX)(BX*1)
	ADDQ $8, BX
	JMP  loop

block:
	PAIR(0, -1, -2)
	PAIR(1, 0, -1)
	PAIR(2, 1, 0)
	PAIR(3, 2, 1)
	PAIR(4, 3, 2)
	PAIR(5, 4, 3)
	PAIR(6, 5, 4)
	PAIR(7, 6, 5)
	ADDQ $8, BX
	JMP  loop

single:
	PAIR(0, -1, -2)
	INCQ BX
	JMP  loop

done:
	RET

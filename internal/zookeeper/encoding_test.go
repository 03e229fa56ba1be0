package zookeeper

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"
	"time"
)

// The expected values below were produced by CPython 3.9 (the original's Debian bullseye images):
// float.hex(), float.fromhex() and int.to_bytes(n, sys.getsizeof(n), 'big').

func TestFormatFloatHex(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x4008000000000000, "0x1.8000000000000p+1"}, // 3.0
		{0x0000000000000000, "0x0.0p+0"},
		{0x8000000000000000, "-0x0.0p+0"},
		{0x3fb999999999999a, "0x1.999999999999ap-4"}, // 0.1
		{0x3ff0000000000000, "0x1.0000000000000p+0"},
		{0xc004000000000000, "-0x1.4000000000000p+1"},
		{0x00000000000007e8, "0x0.00000000007e8p-1022"}, // 1e-320, subnormal
		{0x0000000000000001, "0x0.0000000000001p-1022"}, // smallest subnormal
		{0x0010000000000000, "0x1.0000000000000p-1022"}, // smallest normal
		{0x7fefffffffffffff, "0x1.fffffffffffffp+1023"},
		{0x405edd2f1a9fbe77, "0x1.edd2f1a9fbe77p+6"}, // 123.456
		{0x7ff0000000000000, "inf"},
		{0xfff0000000000000, "-inf"},
		{0x7ff8000000000000, "nan"},
		{0x3fa47ae147ae147b, "0x1.47ae147ae147bp-5"}, // 0.04
		{0x3fd5555555555555, "0x1.5555555555555p-2"}, // 1/3
	}
	for _, tt := range tests {
		f := math.Float64frombits(tt.bits)
		if got := formatFloatHex(f); got != tt.want {
			t.Errorf("formatFloatHex(%v) = %q, want %q", f, got, tt.want)
		}
		if math.IsNaN(f) {
			continue
		}
		back, err := parseFloatHex(tt.want)
		if err != nil || math.Float64bits(back) != tt.bits {
			t.Errorf("parseFloatHex(%q) = %v, %v; want bits %#x", tt.want, back, err, tt.bits)
		}
	}
}

func TestParseFloatHex(t *testing.T) {
	const nanBits = 0x7ff8000000000001 // marks an expected NaN of any payload
	tests := []struct {
		in   string
		bits uint64
		ok   bool
	}{
		{"0x1.8000000000000p+1", 0x4008000000000000, true},
		{"0x0.0p+0", 0x0000000000000000, true},
		{"-0x0.0p+0", 0x8000000000000000, true},
		{"0x1.999999999999ap-4", 0x3fb999999999999a, true},
		{"  0x1.8p+1\n", 0x4008000000000000, true},
		{"0X1.8P1", 0x4008000000000000, true},
		{"1.8p1", 0x4008000000000000, true},
		{"1", 0x3ff0000000000000, true},
		{"1.5", 0x3ff5000000000000, true}, // hex digits even without 0x
		{"0x.8", 0x3fe0000000000000, true},
		{"0x1.", 0x3ff0000000000000, true},
		{"1e3", 0x407e300000000000, true}, // 0x1e3
		{"+0x1p-1074", 0x0000000000000001, true},
		{"0x1p-1075", 0x0000000000000000, true}, // ties to even: zero
		{"0x1.0000001p-1075", 0x0000000000000001, true},
		{"0x3p-1076", 0x0000000000000001, true},
		{"0x1.fffffffffffff7ffffffp+1023", 0x7fefffffffffffff, true},
		{"0x1.00000000000008p0", 0x3ff0000000000000, true},
		{"0x1.000000000000080000000001p0", 0x3ff0000000000001, true},
		{"0x0.00000000007e8p-1022", 0x00000000000007e8, true},
		{"0x00000000000000000000000000001p0", 0x3ff0000000000000, true},
		{"0x0p99999999999", 0x0000000000000000, true},
		{"0x1p-99999999999999", 0x0000000000000000, true},
		{"0x1p+0010", 0x4090000000000000, true},
		{"0xABCDEFp-4", 0x412579bde0000000, true},
		{"0x1P-0", 0x3ff0000000000000, true},
		{"\t-0X.1P4 ", 0xbff0000000000000, true},
		{"inf", 0x7ff0000000000000, true},
		{"-Infinity", 0xfff0000000000000, true},
		{"INF", 0x7ff0000000000000, true},
		{"+inf", 0x7ff0000000000000, true},
		{"nan", nanBits, true},
		{"-nan", nanBits, true},
		{"NaN", nanBits, true},
		{"", 0, false},
		{"0x", 0, false},
		{".", 0, false},
		{"0x1p", 0, false},
		{"0x1p+", 0, false},
		{"0x1p+-1", 0, false},
		{"0x1_0p0", 0, false},
		{"0x1 p1", 0, false},
		{"0x1.8.p1", 0, false},
		{"0xg", 0, false},
		{"--1", 0, false},
		{"0x1p1.5", 0, false},
		{"0x1.fffffffffffff8p+1023", 0, false}, // too large
		{"0x1p1024", 0, false},
		{"0x1p99999999999999999999", 0, false},
		{"infinit", 0, false},
		{"nanx", 0, false},
		{"0x-1", 0, false},
		{"p1", 0, false},
		{"1p", 0, false},
		{"0x0x1", 0, false},
	}
	for _, tt := range tests {
		got, err := parseFloatHex(tt.in)
		switch {
		case !tt.ok:
			if err == nil {
				t.Errorf("parseFloatHex(%q) = %v, want an error", tt.in, got)
			}
		case err != nil:
			t.Errorf("parseFloatHex(%q): %v", tt.in, err)
		case tt.bits == nanBits:
			if !math.IsNaN(got) {
				t.Errorf("parseFloatHex(%q) = %v, want NaN", tt.in, got)
			}
		case math.Float64bits(got) != tt.bits:
			t.Errorf("parseFloatHex(%q) = %x (%#x), want %#x", tt.in, got, math.Float64bits(got), tt.bits)
		}
	}
}

func TestEncodeUint(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "000000000000000000000000000000000000000000000000"},
		{1, "00000000000000000000000000000000000000000000000000000001"},
		{7, "00000000000000000000000000000000000000000000000000000007"},
		{255, "000000000000000000000000000000000000000000000000000000ff"},
		{256, "00000000000000000000000000000000000000000000000000000100"},
		{1<<30 - 1, "0000000000000000000000000000000000000000000000003fffffff"},
		{1 << 30, "0000000000000000000000000000000000000000000000000000000040000000"},
		{1<<60 - 1, "0000000000000000000000000000000000000000000000000fffffffffffffff"},
		{1 << 60, "000000000000000000000000000000000000000000000000000000001000000000000000"},
		{math.MaxUint64, "00000000000000000000000000000000000000000000000000000000ffffffffffffffff"},
	}
	for _, tt := range tests {
		got := encodeUint(tt.n)
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("encodeUint(%d) = %x, want %s", tt.n, got, tt.want)
		}
		back, err := decodeUint(got)
		if err != nil || back != tt.n {
			t.Errorf("decodeUint(encodeUint(%d)) = %d, %v", tt.n, back, err)
		}
	}
}

func TestDecodeUint(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"", 0, true}, // a node made by ensure_path
		{"05", 5, true},
		{"0102", 258, true},
		{"00000000000000000000000000000000000000000000000000000000", 0, true}, // Python 3.11: 28 bytes for 0
		{"ffffffffffffffff", math.MaxUint64, true},
		{"0000ffffffffffffffff", math.MaxUint64, true},
		{"010000000000000000", 0, false},
		{"ff00000000000000000000", 0, false},
	}
	for _, tt := range tests {
		b, _ := hex.DecodeString(tt.in)
		got, err := decodeUint(b)
		if tt.ok && (err != nil || got != tt.want) {
			t.Errorf("decodeUint(%s) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if !tt.ok && err == nil {
			t.Errorf("decodeUint(%s) = %d, want an error", tt.in, got)
		}
	}
}

func TestPythonISOTime(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2024, 5, 1, 12, 34, 56, 123456789, time.UTC), "2024-05-01T12:34:56.123456+00:00"},
		{time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC), "2024-05-01T12:34:56+00:00"},
		{time.Date(2024, 5, 1, 12, 34, 56, 999, time.UTC), "2024-05-01T12:34:56+00:00"},
		{time.Date(2024, 5, 1, 14, 0, 0, 1000, time.FixedZone("CEST", 2*3600)), "2024-05-01T12:00:00.000001+00:00"},
	}
	for _, tt := range tests {
		if got := pythonISOTime(tt.t); got != tt.want {
			t.Errorf("pythonISOTime(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func FuzzDecodeUint(f *testing.F) {
	for _, n := range []uint64{0, 1, 255, 1 << 30, math.MaxUint64} {
		f.Add(encodeUint(n))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeUint(b)
		significant := bytes.TrimLeft(b, "\x00")
		if (err == nil) != (len(significant) <= 8) {
			t.Fatalf("decodeUint(%x) = %d, %v: wrong about fitting 64 bits", b, n, err)
		}
		if err != nil {
			return
		}
		if back, err := decodeUint(encodeUint(n)); err != nil || back != n {
			t.Fatalf("round trip of %d: %d, %v", n, back, err)
		}
	})
}

func FuzzParseFloatHex(f *testing.F) {
	for _, s := range []string{"0x1.8000000000000p+1", "0x0.0p+0", "-inf", "nan", "1.5", " 0X.8P-3 ",
		"0x1p-1075", "0x1_0p0", "", "0x1.fffffffffffff8p+1023"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseFloatHex(s)
		if err != nil || math.IsNaN(v) {
			return
		}
		text := formatFloatHex(v)
		back, err := parseFloatHex(text)
		if err != nil || math.Float64bits(back) != math.Float64bits(v) {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, v, text, back, err)
		}
	})
}

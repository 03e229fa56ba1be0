package zookeeper

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// The original pero-worker tools write administrative_priority with
// int.to_bytes(n, sys.getsizeof(n), 'big'): the length is the size of the Python int object, not of
// the number. Its images run Python 3.9 (Debian bullseye), where that size is 24 bytes for 0 and
// 24 + 4 bytes per started 30-bit digit otherwise (28 bytes for 1..2^30-1, 36 for a full uint64).
// Python 3.11 and later make 0 take 28 bytes; readers accept any length, so both read back the same.
const (
	pyIntHeader    = 24
	pyIntDigitSize = 4
	pyIntDigitBits = 30
)

// encodeUint encodes n as the original writes administrative_priority.
func encodeUint(n uint64) []byte {
	size := pyIntHeader + pyIntDigitSize*((bits.Len64(n)+pyIntDigitBits-1)/pyIntDigitBits)
	b := make([]byte, size)
	for i := size - 1; n > 0; i-- {
		b[i] = byte(n)
		n >>= 8
	}
	return b
}

// decodeUint reads a big-endian unsigned integer of any length, like Python's
// int.from_bytes(b, 'big'); no bytes is 0. It fails only when the value exceeds 64 bits.
func decodeUint(b []byte) (uint64, error) {
	var n uint64
	for _, c := range b {
		if n>>56 != 0 {
			return 0, errors.New("integer exceeds 64 bits")
		}
		n = n<<8 | uint64(c)
	}
	return n, nil
}

// formatFloatHex formats f exactly as Python's float.hex(): "0x1.8000000000000p+1" for 3.0,
// "0x0.0p+0" for 0.0, a 13-digit fraction always, subnormals as "0x0.<fraction>p-1022", and
// "inf", "-inf", "nan" for the special values.
func formatFloatHex(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	sign := ""
	if math.Signbit(f) {
		sign = "-"
	}
	b := math.Float64bits(f)
	exp := int(b>>52) & 0x7ff
	frac := b & (1<<52 - 1)
	switch {
	case exp == 0 && frac == 0:
		return sign + "0x0.0p+0"
	case exp == 0: // subnormal
		return fmt.Sprintf("%s0x0.%013xp-1022", sign, frac)
	default:
		return fmt.Sprintf("%s0x1.%013xp%+d", sign, frac, exp-1023)
	}
}

var errFloatHex = errors.New("invalid hexadecimal floating-point string")

// parseFloatHex parses what Python's float.fromhex accepts: surrounding ASCII whitespace, an optional
// sign, an optional "0x", hexadecimal digits with an optional point (at least one digit), and an
// optional binary exponent "p[+-]digits"; or inf, infinity, nan in any case. Rounding is to nearest
// even, values too small become zero, and values too large are an error, as in Python.
func parseFloatHex(s string) (float64, error) {
	t := strings.Trim(s, " \t\n\v\f\r")
	body, neg := t, false
	if body != "" && (body[0] == '+' || body[0] == '-') {
		neg = body[0] == '-'
		body = body[1:]
	}
	switch strings.ToLower(body) {
	case "inf", "infinity":
		if neg {
			return math.Inf(-1), nil
		}
		return math.Inf(1), nil
	case "nan":
		return math.NaN(), nil
	}
	if len(body) >= 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X') {
		body = body[2:]
	}
	mant, exp, hasExp := body, "0", false
	if i := strings.IndexAny(body, "pP"); i >= 0 {
		mant, exp, hasExp = body[:i], body[i+1:], true
	}
	intPart, fracPart, _ := strings.Cut(mant, ".")
	if intPart == "" && fracPart == "" || !isHex(intPart) || !isHex(fracPart) {
		return 0, fmt.Errorf("parse %q: %w", s, errFloatHex)
	}
	if hasExp {
		digits := strings.TrimLeft(exp, "+-")
		if len(exp)-len(digits) > 1 || !isDecimal(digits) {
			return 0, fmt.Errorf("parse %q: %w", s, errFloatHex)
		}
	}
	// Every piece is now plain digits, so strconv sees a well-formed Go hex literal (no underscores).
	lit := "0x" + cmp.Or(intPart, "0") + "." + fracPart + "p" + exp
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0) {
			return 0, fmt.Errorf("parse %q: value too large to represent as a float", s)
		}
		if !errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("parse %q: %w", s, errFloatHex)
		}
	}
	if neg {
		f = -f
	}
	return f, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// decodeAvgMsgTime reads an avg_msg_time node. Empty data, as a freshly created stage of the
// original has, means no measurement yet and reads as 0.
func decodeAvgMsgTime(b []byte) (float64, error) {
	if len(strings.TrimSpace(string(b))) == 0 {
		return 0, nil
	}
	return parseFloatHex(string(b))
}

// pythonISOTime formats t in UTC as Python's datetime.now(timezone.utc).isoformat() does:
// "2024-05-01T12:34:56.123456+00:00", without the fraction when the microseconds are zero.
func pythonISOTime(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05+00:00")
	}
	return t.Format("2006-01-02T15:04:05.000000+00:00")
}

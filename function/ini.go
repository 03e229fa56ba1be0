package function

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// INI is a parsed config.ini: sections of key = value pairs, as read by
// Python's configparser (pero-ocr's format). Section and key names are
// case-insensitive; keys before any section belong to section "".
type INI struct {
	sections map[string]map[string]string
}

// ParseINI parses config.ini text. Comments start with '#' or ';' at the
// beginning of a line; both '=' and ':' separate a key from its value;
// indented lines continue the previous value.
func ParseINI(text string) (*INI, error) {
	ini := &INI{sections: map[string]map[string]string{"": {}}}
	sec, lastKey := "", ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if lastKey == "" {
				return nil, fmt.Errorf("config line %d: continuation without a key", n)
			}
			ini.sections[sec][lastKey] += "\n" + line
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, fmt.Errorf("config line %d: unterminated section header %q", n, line)
			}
			sec = strings.ToLower(strings.TrimSpace(line[1:end]))
			if ini.sections[sec] == nil {
				ini.sections[sec] = map[string]string{}
			}
			lastKey = ""
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("config line %d: want key = value, got %q", n, line)
		}
		lastKey = strings.ToLower(strings.TrimSpace(line[:i]))
		ini.sections[sec][lastKey] = strings.TrimSpace(line[i+1:])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ini, nil
}

// Has reports whether section has key.
func (c *INI) Has(section, key string) bool {
	_, ok := c.sections[strings.ToLower(section)][strings.ToLower(key)]
	return ok
}

// HasSection reports whether the section exists.
func (c *INI) HasSection(section string) bool {
	_, ok := c.sections[strings.ToLower(section)]
	return ok
}

// String returns the value of key in section, or def when absent.
func (c *INI) String(section, key, def string) string {
	if v, ok := c.sections[strings.ToLower(section)][strings.ToLower(key)]; ok {
		return v
	}
	return def
}

// Int returns an integer value, def when absent, and an error naming the key
// when the value is not an integer.
func (c *INI) Int(section, key string, def int) (int, error) {
	v, ok := c.sections[strings.ToLower(section)][strings.ToLower(key)]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("config [%s] %s: %q is not an integer", section, key, v)
	}
	return n, nil
}

// Float returns a float value, def when absent.
func (c *INI) Float(section, key string, def float64) (float64, error) {
	v, ok := c.sections[strings.ToLower(section)][strings.ToLower(key)]
	if !ok || v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("config [%s] %s: %q is not a number", section, key, v)
	}
	return f, nil
}

// Bool returns a boolean value (configparser's yes/no, on/off, true/false, 1/0), def when absent.
func (c *INI) Bool(section, key string, def bool) (bool, error) {
	v, ok := c.sections[strings.ToLower(section)][strings.ToLower(key)]
	if !ok || v == "" {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("config [%s] %s: %q is not a boolean", section, key, v)
}

// Seconds returns a duration given in (fractional) seconds, def when absent.
// Negative values are an error.
func (c *INI) Seconds(section, key string, def time.Duration) (time.Duration, error) {
	if !c.Has(section, key) {
		return def, nil
	}
	f, err := c.Float(section, key, 0)
	if err != nil {
		return 0, err
	}
	if f < 0 {
		return 0, fmt.Errorf("config [%s] %s: %v is negative", section, key, f)
	}
	return time.Duration(f * float64(time.Second)), nil
}

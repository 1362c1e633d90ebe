package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a count of bytes. In YAML and the environment it is written as a
// plain integer ("1024") or with a unit: binary "512B", "64KiB", "1MiB",
// "2GiB", "1TiB" (also "Ki", "Mi", "Gi", "Ti"), or decimal "1KB", "1MB",
// "1GB", "1TB". Units ignore case; a space may separate number and unit.
type Size int64

// Byte sizes for building limits in code.
const (
	Byte Size = 1
	KiB       = 1024 * Byte
	MiB       = 1024 * KiB
	GiB       = 1024 * MiB
	TiB       = 1024 * GiB
)

// sizeUnits maps lower-cased unit spellings to their multiplier.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseSize parses a byte size such as "64KiB", "1MiB", "1KB" or "1024".
// Negative numbers, fractions, unknown units and values past int64 are
// errors wrapping ErrInvalidSize.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	digits := 0
	for digits < len(t) && t[digits] >= '0' && t[digits] <= '9' {
		digits++
	}
	if digits == 0 {
		if strings.HasPrefix(t, "-") {
			return 0, sizeError(s, "must not be negative")
		}
		return 0, sizeError(s, "want a whole number of bytes with an optional unit, e.g. 1MiB")
	}
	n, err := strconv.ParseInt(t[:digits], 10, 64)
	if err != nil {
		return 0, sizeError(s, "too large")
	}
	unit := strings.TrimSpace(t[digits:])
	if strings.HasPrefix(unit, ".") {
		return 0, sizeError(s, "fractions are not allowed; use a smaller unit, e.g. 1536KiB")
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok {
		return 0, sizeError(s, fmt.Sprintf("unknown unit %q (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)", unit))
	}
	if n > math.MaxInt64/mult {
		return 0, sizeError(s, "too large")
	}
	return Size(n * mult), nil
}

func sizeError(s, why string) error {
	return &detailError{sentinel: ErrInvalidSize, msg: fmt.Sprintf("%s %q: %s", ErrInvalidSize, s, why)}
}

// String formats the size in the largest binary unit that divides it exactly,
// e.g. "1MiB", "64KiB", "1000B", so that ParseSize(s.String()) == s.
func (s Size) String() string {
	if s <= 0 {
		return strconv.FormatInt(int64(s), 10) + "B"
	}
	for _, u := range []struct {
		size Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s%u.size == 0 {
			return strconv.FormatInt(int64(s/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText writes the size as String does, so configs print readably.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses the size as ParseSize does.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

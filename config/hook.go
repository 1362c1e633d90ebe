package config

import (
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Reflected types the decode hook converts specially.
var (
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[time.Duration]()
	rateType     = reflect.TypeFor[Rate]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
)

// decodeHook converts YAML and environment values into Config field types,
// strictly: where mapstructure's weak typing would turn 1.5 into 1, 10 into
// 10ns or 5000000000 into a wrapped int32, this returns an error that names
// the value and what was expected. Environment values are all strings, so
// numbers and booleans are parsed from strings here too.
func decodeHook(from, to reflect.Value) (any, error) {
	v := from.Interface()
	t := to.Type()
	switch t {
	case sizeType:
		return toSize(v)
	case durationType:
		return toDuration(v)
	case rateType:
		return toRate(v)
	case prefixType:
		return toPrefix(v)
	}
	switch t.Kind() {
	case reflect.Pointer:
		// mapstructure decodes into the element next, calling this hook again.
		return v, nil
	case reflect.Struct, reflect.Map:
		if from.Kind() != reflect.Map {
			return nil, invalidf("expected a mapping, got " + describe(v))
		}
	case reflect.Slice:
		if s, ok := v.(string); ok {
			// An environment variable carries a list as "a,b,c".
			return splitList(s), nil
		}
		if from.Kind() != reflect.Slice {
			return nil, invalidf("expected a list, got " + describe(v))
		}
	case reflect.String:
		if from.Kind() != reflect.String {
			return nil, invalidf("expected a string, got " + describe(v) + " (quote it)")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return toInt(v, t)
	case reflect.Float32, reflect.Float64:
		return toFloat(v)
	case reflect.Bool:
		return toBool(v)
	}
	return v, nil
}

// describe renders a decoded value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case map[string]any, map[any]any:
		return "a mapping"
	case []any:
		return "a list"
	case nil:
		return "nothing"
	}
	return fmt.Sprint(v)
}

// splitList splits a comma-separated value, dropping blanks.
func splitList(s string) []string {
	out := []string{}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// wholeNumber returns v as an int64 if it is an integer, an integral float,
// or a string holding one.
func wholeNumber(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint:
		return int64(x), uint64(x) <= math.MaxInt64
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		return int64(x), x <= math.MaxInt64
	case float32:
		return wholeNumber(float64(x))
	case float64:
		// 2^63 itself is not representable; the bound is exclusive.
		if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toInt(v any, t reflect.Type) (any, error) {
	n, ok := wholeNumber(v)
	if !ok {
		return nil, invalidf("expected a whole number, got " + describe(v))
	}
	if reflect.Zero(t).OverflowInt(n) {
		return nil, invalidf(fmt.Sprintf("%d is out of range for this key", n))
	}
	return reflect.ValueOf(n).Convert(t).Interface(), nil
}

func toFloat(v any) (any, error) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
			return nil, invalidf("expected a number, got " + describe(v))
		}
	default:
		n, ok := wholeNumber(v)
		if !ok {
			return nil, invalidf("expected a number, got " + describe(v))
		}
		f = float64(n)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, invalidf("expected a finite number, got " + describe(v))
	}
	return f, nil
}

func toBool(v any) (any, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "yes", "on", "1":
			return true, nil
		case "false", "no", "off", "0":
			return false, nil
		}
	}
	return nil, invalidf("expected true or false, got " + describe(v))
}

func toSize(v any) (any, error) {
	if s, ok := v.(string); ok {
		return ParseSize(s)
	}
	n, ok := wholeNumber(v)
	if !ok {
		switch v.(type) {
		case uint, uint64, float32, float64:
			return nil, sizeError(fmt.Sprint(v), "must be a whole number of bytes no larger than 8EiB")
		}
		return nil, &detailError{sentinel: ErrInvalidSize, msg: "expected a size such as 1MiB, got " + describe(v)}
	}
	if n < 0 {
		return nil, sizeError(fmt.Sprint(v), "must not be negative")
	}
	return Size(n), nil
}

func toDuration(v any) (any, error) {
	if s, ok := v.(string); ok {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return nil, invalidf(fmt.Sprintf("invalid duration %q: want a number with a unit, e.g. 10s, 1m30s, 500ms", s))
		}
		return d, nil
	}
	if n, ok := wholeNumber(v); ok && n == 0 {
		return time.Duration(0), nil
	}
	return nil, invalidf("invalid duration " + describe(v) + ": a duration needs a unit, e.g. 10s, 1m30s, 500ms")
}

func toRate(v any) (any, error) {
	if s, ok := v.(string); ok {
		return ParseRate(s)
	}
	if n, ok := wholeNumber(v); ok && n == 0 {
		return Rate{}, nil
	}
	return nil, rateError(describe(v), "want count/interval, e.g. 50/s, or \"unlimited\"")
}

func toPrefix(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, invalidf("expected a CIDR such as 10.0.0.0/8, got " + describe(v))
	}
	return parsePrefix(s)
}

// parsePrefix parses a CIDR, or a bare IP as its /32 or /128, and masks it.
func parsePrefix(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if !strings.Contains(t, "/") {
		a, err := netip.ParseAddr(t)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, invalidf(fmt.Sprintf("invalid CIDR %q: want an IP or a prefix such as 10.0.0.0/8", s))
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(t)
	if err != nil {
		return netip.Prefix{}, invalidf(fmt.Sprintf("invalid CIDR %q: want an IP or a prefix such as 10.0.0.0/8", s))
	}
	return p.Masked(), nil
}

package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rate is a count of events per interval, written "50/s", "600/m", "3600/h"
// or "10/100ms" (any Go duration after the slash; "s", "m" and "h" alone mean
// one second, minute, hour). The zero Rate, written "0" or "unlimited", means
// no limit.
type Rate struct {
	// Count is how many events the interval allows; it is also the burst a
	// token bucket built from the Rate should allow. Zero means unlimited.
	Count int
	// Per is the interval Count applies to.
	Per time.Duration
}

// maxRateCount bounds Count so that bursts stay sane and arithmetic on them
// cannot overflow.
const maxRateCount = math.MaxInt32

// rateUnits maps spelled-out intervals to durations.
var rateUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "second": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute,
	"h": time.Hour, "hour": time.Hour,
}

// ParseRate parses a rate such as "50/s", "600/m" or "10/100ms"; "0" and
// "unlimited" give the zero Rate. Errors wrap ErrInvalidRate.
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	if t == "0" || strings.EqualFold(t, "unlimited") {
		return Rate{}, nil
	}
	countText, perText, ok := strings.Cut(t, "/")
	if !ok {
		return Rate{}, rateError(s, `want count/interval, e.g. 50/s, or "unlimited"`)
	}
	countText, perText = strings.TrimSpace(countText), strings.TrimSpace(perText)
	if countText == "" || strings.TrimLeft(countText, "0123456789") != "" {
		return Rate{}, rateError(s, "count must be a whole number")
	}
	n, err := strconv.ParseInt(countText, 10, 64)
	if err != nil || n > maxRateCount {
		return Rate{}, rateError(s, fmt.Sprintf("count must be at most %d", maxRateCount))
	}
	if n == 0 {
		return Rate{}, rateError(s, `count must be positive; write "unlimited" for no limit`)
	}
	per, ok := rateUnits[strings.ToLower(perText)]
	if !ok {
		if perText == "" || perText[0] < '0' || perText[0] > '9' {
			// "ms", "us": a unit alone means one of it.
			perText = "1" + perText
		}
		per, err = time.ParseDuration(perText)
		if err != nil {
			return Rate{}, rateError(s, "interval must be s, m, h or a duration such as 100ms")
		}
	}
	if per <= 0 {
		return Rate{}, rateError(s, "interval must be positive")
	}
	return Rate{Count: int(n), Per: per}, nil
}

func rateError(s, why string) error {
	return &detailError{sentinel: ErrInvalidRate, msg: fmt.Sprintf("%s %q: %s", ErrInvalidRate, s, why)}
}

// Unlimited reports whether the Rate sets no limit: its Count or Per is zero.
func (r Rate) Unlimited() bool { return r.Count == 0 || r.Per == 0 }

// PerSecond returns the rate as events per second, or 0 for an unlimited
// Rate; check Unlimited before using it as a limit.
func (r Rate) PerSecond() float64 {
	if r.Unlimited() {
		return 0
	}
	return float64(r.Count) / r.Per.Seconds()
}

// String formats the rate so that ParseRate reads it back: "50/s", "600/m",
// "10/100ms", or "unlimited".
func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	per := r.Per.String()
	switch r.Per {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "m"
	case time.Hour:
		per = "h"
	}
	return strconv.Itoa(r.Count) + "/" + per
}

// MarshalText writes the rate as String does.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses the rate as ParseRate does.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

package limits

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/config"
)

// withDefaults fills the GateOptions fields a test leaves at zero, and NewGate requires, with the values
// config.Default() ships (as cmd/internal/app passes them). The fields where zero means "off"
// (OffencesBeforeBan, MaxConnsPerIP, RatePerSecond) stay as the test set them.
func withDefaults(o GateOptions) GateOptions {
	d := config.Default().Abuse
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&o.OffenceWindow, d.OffenceWindow)
	set(&o.BanMin, d.BanMin)
	set(&o.BanMax, d.BanMax)
	set(&o.ForgetAfter, d.ForgetAfter)
	if o.MaxTracked == 0 {
		o.MaxTracked = d.MaxTrackedSources
	}
	if o.IPv4Prefix == 0 {
		o.IPv4Prefix = d.IPv4Prefix
	}
	if o.IPv6Prefix == 0 {
		o.IPv6Prefix = d.IPv6Prefix
	}
	return o
}

// newGate is NewGate(withDefaults(o)), failing tb on an error.
func newGate(tb testing.TB, o GateOptions) *Gate {
	tb.Helper()
	g, err := NewGate(withDefaults(o))
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// NewGate takes every value as given: a value out of range is an error naming the field, never replaced
// by a default; zero where zero means "off" is accepted.
func TestNewGateRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*GateOptions)
		field  string // "" = accepted
	}{
		{"defaults", func(*GateOptions) {}, ""},
		{"bans off", func(o *GateOptions) { o.OffencesBeforeBan = 0 }, ""},
		{"no cap, no rate", func(o *GateOptions) { o.MaxConnsPerIP, o.RatePerSecond, o.RateBurst = 0, 0, 0 }, ""},
		{"ban max = ban min", func(o *GateOptions) { o.BanMin, o.BanMax = time.Hour, time.Hour }, ""},
		{"negative threshold", func(o *GateOptions) { o.OffencesBeforeBan = -1 }, "OffencesBeforeBan"},
		{"NaN threshold", func(o *GateOptions) { o.OffencesBeforeBan = math.NaN() }, "OffencesBeforeBan"},
		{"zero window", func(o *GateOptions) { o.OffenceWindow = 0 }, "OffenceWindow"},
		{"zero ban min", func(o *GateOptions) { o.BanMin = 0 }, "BanMin"},
		{"zero ban max", func(o *GateOptions) { o.BanMax = 0 }, "BanMax"},
		{"ban max below min", func(o *GateOptions) { o.BanMin, o.BanMax = time.Hour, time.Minute }, "BanMax"},
		{"zero forget after", func(o *GateOptions) { o.ForgetAfter = 0 }, "ForgetAfter"},
		{"negative cap", func(o *GateOptions) { o.MaxConnsPerIP = -1 }, "MaxConnsPerIP"},
		{"infinite rate", func(o *GateOptions) { o.RatePerSecond = math.Inf(1) }, "RatePerSecond"},
		{"rate without burst", func(o *GateOptions) { o.RatePerSecond, o.RateBurst = 2.5, 0 }, "RateBurst"},
		{"invalid allow", func(o *GateOptions) { o.Allow = []netip.Prefix{{}} }, "Allow[0]"},
		{"zero tracked", func(o *GateOptions) { o.MaxTracked = 0 }, "MaxTracked"},
		{"zero ipv4 prefix", func(o *GateOptions) { o.IPv4Prefix = 0 }, "IPv4Prefix"},
		{"ipv4 prefix 33", func(o *GateOptions) { o.IPv4Prefix = 33 }, "IPv4Prefix"},
		{"zero ipv6 prefix", func(o *GateOptions) { o.IPv6Prefix = 0 }, "IPv6Prefix"},
		{"ipv6 prefix 129", func(o *GateOptions) { o.IPv6Prefix = 129 }, "IPv6Prefix"},
	}
	d := config.Default().Abuse
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := withDefaults(GateOptions{
				OffencesBeforeBan: d.OffencesBeforeBan,
				MaxConnsPerIP:     d.MaxConnectionsPerIP,
				RatePerSecond:     d.ConnectionRatePerIP.PerSecond(),
				RateBurst:         d.ConnectionRatePerIP.Count,
			})
			tt.mutate(&o)
			g, err := NewGate(o)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("NewGate: %v", err)
				}
				if got := g.Options(); got.BanMin != o.BanMin || got.BanMax != o.BanMax || got.RateBurst != o.RateBurst {
					t.Errorf("Options() = %+v, want the options given %+v", got, o)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("NewGate = %v, want ErrInvalidOptions naming %s", err, tt.field)
			}
		})
	}
}

package proxy

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/config"
	"github.com/kafkaguard/kafkaguard/limits"
)

// testOptions returns the Options config.Default() turns into (as
// cmd/internal/app does), without routes, policy, pool or gate: tests start
// from the shipped defaults, which proxy no longer fills in itself.
func testOptions() Options {
	d := config.Default()
	return Options{
		PoolWait:            d.Pool.Wait,
		Weights:             Weights{Closed: d.Abuse.Weights.Closed, RejectedProduce: d.Abuse.Weights.RejectedProduce},
		HeaderTimeout:       d.Timeouts.Header,
		FrameTimeout:        d.Timeouts.Frame,
		IdleTimeout:         d.Timeouts.Idle,
		DialTimeout:         d.Timeouts.Dial,
		WriteTimeout:        d.Timeouts.Write,
		RequestTimeout:      d.Timeouts.Request,
		CutThroughBytes:     int32(d.Proxy.CutThroughBytes),
		CutThroughBudget:    int64(d.Proxy.CutThroughBudget),
		MaxInflight:         d.Proxy.MaxInflight,
		MaxRewriteBytes:     int32(d.Proxy.MaxRewriteBytes),
		MaxLocalAnswerBytes: int(d.Limits.MaxLocalAnswerBytes),
		UnmappedPort:        d.Rewrite.UnmappedPort,

		MaxUnauthenticatedBytes: int32(d.Limits.MaxUnauthenticatedBytes),
	}
}

// testGate is limits.NewGate with the fields a test leaves at zero, and the
// gate requires, set to config.Default()'s values (as cmd/internal/app passes
// them); the fields where zero means "off" (OffencesBeforeBan,
// MaxConnsPerIP, RatePerSecond) stay as the test set them.
func testGate(tb testing.TB, o limits.GateOptions) *limits.Gate {
	tb.Helper()
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
	g, err := limits.NewGate(o)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// New refuses a value it cannot run with and names the field, instead of
// putting a default in its place; zero weights are valid (offences harmless)
// and kept.
func TestNewRejectsInvalidOptions(t *testing.T) {
	pool, err := limits.NewPool(limits.PoolOptions{ChunkBytes: 1 << 10, TotalBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := limits.NewPolicy(limits.PolicyOptions{MaxRequestBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	valid := func() Options {
		o := testOptions()
		o.Routes = []Route{{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:9"}}
		o.Policy, o.Pool, o.Logger = pol, pool, zerolog.Nop()
		return o
	}
	tests := []struct {
		name   string
		mutate func(*Options)
		field  string // "" = accepted
	}{
		{"defaults", func(*Options) {}, ""},
		{"zero weights", func(o *Options) { o.Weights = Weights{} }, ""},
		{"no routes", func(o *Options) { o.Routes = nil }, "Routes"},
		{"no policy", func(o *Options) { o.Policy = nil }, "Policy"},
		{"no pool", func(o *Options) { o.Pool = nil }, "Pool"},
		{"zero pool wait", func(o *Options) { o.PoolWait = 0 }, "PoolWait"},
		{"zero header timeout", func(o *Options) { o.HeaderTimeout = 0 }, "HeaderTimeout"},
		{"zero frame timeout", func(o *Options) { o.FrameTimeout = 0 }, "FrameTimeout"},
		{"negative idle timeout", func(o *Options) { o.IdleTimeout = -time.Second }, "IdleTimeout"},
		{"zero dial timeout", func(o *Options) { o.DialTimeout = 0 }, "DialTimeout"},
		{"zero write timeout", func(o *Options) { o.WriteTimeout = 0 }, "WriteTimeout"},
		{"zero request timeout", func(o *Options) { o.RequestTimeout = 0 }, "RequestTimeout"},
		{"negative cut through", func(o *Options) { o.CutThroughBytes = -1 }, "CutThroughBytes"},
		{"cut through without a budget", func(o *Options) { o.CutThroughBytes, o.CutThroughBudget = 64<<10, 0 }, "CutThroughBudget"},
		{"zero inflight", func(o *Options) { o.MaxInflight = 0 }, "MaxInflight"},
		{"huge inflight", func(o *Options) { o.MaxInflight = 1<<16 + 1 }, "MaxInflight"},
		{"zero rewrite bytes", func(o *Options) { o.MaxRewriteBytes = 0 }, "MaxRewriteBytes"},
		{"zero local answer bytes", func(o *Options) { o.MaxLocalAnswerBytes = 0 }, "MaxLocalAnswerBytes"},
		{"bad unmapped port", func(o *Options) { o.UnmappedPort = 70000 }, "UnmappedPort"},
		{"negative weight", func(o *Options) { o.Weights.Closed = -1 }, "Weights.Closed"},
		{"NaN weight", func(o *Options) { o.Weights.RejectedProduce = math.NaN() }, "Weights.RejectedProduce"},
		{"bad listen", func(o *Options) { o.Routes[0].Listen = "nope" }, "Routes[0].Listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.mutate(&o)
			want := o
			s, err := New(o)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				got := s.Options()
				if got.Weights != want.Weights || got.PoolWait != want.PoolWait || got.MaxInflight != want.MaxInflight {
					t.Errorf("Options() = %+v, want the options given %+v", got, want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New = %v, want ErrInvalidOptions naming %s", err, tt.field)
			}
		})
	}
}

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/limits"
)

// Route binds one listener to the broker behind it.
type Route struct {
	// Listen is the host:port clients connect to ("127.0.0.1:0" picks a port).
	Listen string
	// Upstream is the broker's host:port. Metadata entries whose host:port
	// equal it are rewritten to this route's advertised address.
	Upstream string
	// Advertised is the host:port told to clients in metadata. Empty means the
	// bound listener address, or, when that host is unspecified (0.0.0.0),
	// the broker's own advertised host with the listener's port.
	Advertised string
	// NodeID, when HasNodeID, matches metadata entries by broker id instead
	// of by host:port (for brokers that advertise a name the proxy does not
	// dial, as in a sidecar).
	NodeID    int32
	HasNodeID bool
}

// Weights are how much one offence counts towards a ban.
type Weights struct {
	// Closed is the weight of an offence that closed the connection.
	Closed float64
	// RejectedProduce is the weight of a Produce answered with
	// MESSAGE_TOO_LARGE: a real producer may exceed the limit by mistake.
	RejectedProduce float64
}

// Options configure a Server. Zero durations take the defaults listed.
type Options struct {
	Routes []Route

	// Policy judges every request header; required.
	Policy *limits.Policy
	// Pool supplies every chunk a frame moves through; required.
	Pool *limits.Pool
	// PoolWait is how long a connection may wait for a chunk (default 5s);
	// past it the connection is closed with reason pool_exhausted.
	PoolWait time.Duration
	// Gate, when set, judges connections at accept and collects offences.
	Gate    *limits.Gate
	Weights Weights

	HeaderTimeout time.Duration // first byte of a frame to end of its header (default 10s)
	FrameTimeout  time.Duration // first byte of a frame to its end (default 30s)
	IdleTimeout   time.Duration // silence between frames (default 10m)
	DialTimeout   time.Duration // upstream dial (default 5s)
	// WriteTimeout bounds writes (default 30s). To the client, responses
	// are written in steps of at most 256 KiB, each of which must complete
	// within it, so a slow but steady reader is served and one taking less
	// than a step per WriteTimeout is cut (client_error). To the broker,
	// each write of a request (the whole frame, or one chunk of a frame cut
	// through) must complete within it (upstream_error); requests are
	// bounded by the Policy, so one deadline per write suffices.
	WriteTimeout time.Duration
	// RequestTimeout bounds how long the oldest owed response may be owed,
	// and how long a response under way may go without a byte from the
	// broker (default 10m). Past it the connection closes as
	// request_timeout: the broker's fault, not the client's. It must exceed
	// the clients' rebalance timeout (max.poll.interval.ms), which a
	// JoinGroup or SyncGroup may legitimately wait.
	RequestTimeout time.Duration

	// CutThroughBytes: frames larger than this are forwarded chunk by chunk
	// as they arrive; zero stores and forwards every frame whole, so the
	// broker never sees a length prefix for bytes that have not arrived.
	CutThroughBytes int32
	// MaxInflight bounds requests awaiting a response per connection
	// (default 128); the client's reads pause while it is reached.
	MaxInflight int
	// MaxRewriteBytes bounds a response decoded for address rewriting
	// (default 16 MiB); a larger one closes the connection.
	MaxRewriteBytes int32
	// MaxLocalAnswerBytes bounds a response kafkaguard builds itself (the
	// MESSAGE_TOO_LARGE answer to an oversized Produce, whose size follows
	// the partitions the request names), size prefix included (default
	// 64 KiB). An answer that would be larger closes the connection
	// (answer_too_large) instead, as Kafka closes on a request it cannot
	// answer. It is also how many pool bytes a connection's queued answers
	// may hold before kafkaguard stops reading its requests.
	MaxLocalAnswerBytes int
	// UnmappedPort, when non-zero, advertises brokers that no route fronts
	// at their own host with this port (one kafkaguard sidecar per broker).
	UnmappedPort int

	// Dial dials an upstream; nil uses a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	Logger  zerolog.Logger
	Metrics *Metrics
}

func (o *Options) setDefaults() error {
	var errs []error
	if len(o.Routes) == 0 {
		errs = append(errs, errors.New("proxy: no routes"))
	}
	if o.Policy == nil {
		errs = append(errs, errors.New("proxy: no policy"))
	}
	if o.Pool == nil {
		errs = append(errs, errors.New("proxy: no pool"))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PoolWait, 5*time.Second)
	def(&o.HeaderTimeout, 10*time.Second)
	def(&o.FrameTimeout, 30*time.Second)
	def(&o.IdleTimeout, 10*time.Minute)
	def(&o.DialTimeout, 5*time.Second)
	def(&o.WriteTimeout, 30*time.Second)
	def(&o.RequestTimeout, 10*time.Minute)
	if o.MaxInflight <= 0 {
		o.MaxInflight = 128
	}
	if o.MaxLocalAnswerBytes <= 0 {
		o.MaxLocalAnswerBytes = 64 << 10
	}
	if o.MaxRewriteBytes <= 0 {
		o.MaxRewriteBytes = 16 << 20
	}
	if o.Weights == (Weights{}) {
		o.Weights = Weights{Closed: 1, RejectedProduce: 0.25}
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	for i, r := range o.Routes {
		if _, _, err := net.SplitHostPort(r.Listen); err != nil {
			errs = append(errs, fmt.Errorf("proxy: route %d listen %q: %w", i, r.Listen, err))
		}
		if _, _, err := net.SplitHostPort(r.Upstream); err != nil {
			errs = append(errs, fmt.Errorf("proxy: route %d upstream %q: %w", i, r.Upstream, err))
		}
	}
	return errors.Join(errs...)
}

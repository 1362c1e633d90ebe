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
	// SASLRequire holds clients to ApiVersions, SaslHandshake and
	// SaslAuthenticate, each at most Options.MaxUnauthenticatedBytes, until
	// the broker has accepted their SASL login (config sasl: require);
	// false passes SASL through without requiring it.
	SASLRequire bool
	// TLS, when set (from NewServerTLS), makes clients speak TLS to this
	// listener: each connection's handshake runs after the Gate admits it,
	// within TLSHandshakeTimeout. Nil is plaintext; there is no fallback
	// from one to the other.
	TLS *TLSFiles
	// UpstreamTLS, when set (from NewUpstreamTLS), makes every dial of
	// Upstream a TLS client handshake, within TLSHandshakeTimeout. Nil is
	// plaintext.
	UpstreamTLS *TLSFiles
}

// Weights are how much one offence counts towards a ban. A weight of 0 makes
// that kind of offence harmless; none may be negative.
type Weights struct {
	// Closed is the weight of an offence that closed the connection.
	Closed float64
	// RejectedProduce is the weight of a Produce answered with
	// MESSAGE_TOO_LARGE: a real producer may exceed the limit by mistake.
	RejectedProduce float64
}

// ErrInvalidOptions is wrapped by New for every option it refuses.
var ErrInvalidOptions = errors.New("invalid options")

// Options configure a Server. New takes every value as given and refuses
// one out of range with an error naming the field; it fills in nothing.
// Defaults live in config.Default, and cmd/internal/app turns a config into
// Options.
type Options struct {
	Routes []Route

	// Policy judges every request header; required.
	Policy *limits.Policy
	// Pool supplies every chunk a frame moves through; required.
	Pool *limits.Pool
	// PoolWait is how long a connection may wait for a chunk; past it the
	// connection is closed with reason pool_exhausted. Must be positive.
	PoolWait time.Duration
	// Gate, when set, judges connections at accept and collects offences.
	// Nil means no bans, caps or rates.
	Gate *limits.Gate
	// Weights price offences for the Gate; the zero Weights make every
	// offence harmless.
	Weights Weights

	// The timeouts below must all be positive.
	HeaderTimeout time.Duration // first byte of a frame to end of its header
	FrameTimeout  time.Duration // first byte of a frame to its end
	IdleTimeout   time.Duration // silence between frames
	DialTimeout   time.Duration // upstream dial
	// WriteTimeout bounds writes. To the client, responses are written in
	// steps of at most 256 KiB, each of which must complete within it, so a
	// slow but steady reader is served and one taking less than a step per
	// WriteTimeout is cut (client_error). To the broker, each write of a
	// request (the whole frame, or one chunk of a frame cut through) must
	// complete within it (upstream_error); requests are bounded by the
	// Policy, so one deadline per write suffices.
	WriteTimeout time.Duration
	// RequestTimeout bounds how long the oldest owed response may be owed,
	// and how long a response under way may go without a byte from the
	// broker (through a pipe, without its 256 KiB step; the time spent
	// waiting for the client counts against it only up to an eighth of
	// it: see relayPiped).
	// Past it the connection closes as request_timeout: the
	// broker's fault, not the client's. It must exceed the clients'
	// rebalance timeout (max.poll.interval.ms), which a JoinGroup or
	// SyncGroup may legitimately wait.
	RequestTimeout time.Duration
	// TLSHandshakeTimeout bounds a client's TLS handshake from accept, and
	// the handshake with a TLS broker after its dial. A handshake not done
	// in time is an offence (tls_handshake_timeout) on the client's side, a
	// failed dial on the broker's. Must be positive when any route has TLS
	// or UpstreamTLS; unused otherwise.
	TLSHandshakeTimeout time.Duration

	// CutThroughBytes: frames larger than this are forwarded as they
	// arrive; zero stores and forwards every frame whole, so the broker
	// never sees a length prefix for bytes that have not arrived. Must not
	// be negative.
	CutThroughBytes int32
	// CutThroughBudget bounds the declared sizes, summed, of the frames
	// being cut through at once, what the brokers may be made to wait for:
	// a frame that would go over it is stored and forwarded instead. Must
	// be positive when CutThroughBytes is set.
	CutThroughBudget int64
	// MaxInflight bounds requests awaiting a response per connection; the
	// client's reads pause while it is reached. 1..65536.
	MaxInflight int
	// MaxRewriteBytes bounds a response decoded for address rewriting; a
	// larger one closes the connection. Must be positive.
	MaxRewriteBytes int32
	// MaxLocalAnswerBytes bounds a response kafkaguard builds itself (the
	// MESSAGE_TOO_LARGE answer to an oversized Produce, whose size follows
	// the partitions the request names), size prefix included. An answer
	// that would be larger closes the connection (answer_too_large)
	// instead, as Kafka closes on a request it cannot answer. It is also
	// how many pool bytes a connection's queued answers may hold before
	// kafkaguard stops reading its requests. Must be positive.
	MaxLocalAnswerBytes int
	// MaxUnauthenticatedBytes bounds each header-less SASL token of a
	// SaslHandshake v0 exchange, and, on a route with SASLRequire, each
	// request before the broker has accepted the client's login: a larger
	// frame closes the connection (sasl_too_large) before a byte of it
	// past the length prefix is read. Must be positive.
	MaxUnauthenticatedBytes int32
	// UnmappedPort, when non-zero, advertises brokers that no route fronts
	// at their own host with this port (one kafkaguard sidecar per broker).
	// 0..65535.
	UnmappedPort int

	// Dial dials an upstream; nil uses a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	Logger  zerolog.Logger
	Metrics *Metrics

	// Test hook for the Linux pipe path (forwardPiped): pipeLimit, when
	// positive, caps a pipe's capacity below fs.pipe-max-size, so frames
	// spill into chunks.
	pipeLimit int
	// pipesOpen, when positive, bounds the server's open pipes below
	// maxPipesOpen, so tests reach the bound with a few connections.
	pipesOpen int
	// responseCopy relays large responses through a chunk (relayLarge),
	// as when no pipe is to be had, instead of relayPiped.
	responseCopy bool
	// store picks the store path of a frame larger than a chunk (pipe,
	// readv or chunks; see storePath) so tests and benchmarks run each;
	// the zero value is the default.
	store storePath
}

// invalid is the error for one option out of range: the field and why, wrapping ErrInvalidOptions.
func invalid(format string, args ...any) error {
	return fmt.Errorf("proxy: "+format+": %w", append(args, ErrInvalidOptions)...)
}

// maxInflight is the most requests a connection may owe responses for: each
// is a slot in a channel made per connection.
const maxInflight = 1 << 16

// validate refuses options New cannot run with, naming each field, all
// problems joined. It changes nothing but a nil Dial, which is wiring, not a
// setting.
func (o *Options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, invalid(format, args...)) }
	if len(o.Routes) == 0 {
		bad("Routes: none")
	}
	if o.Pool == nil {
		bad("Pool: nil")
	}
	if o.PoolWait <= 0 {
		bad("PoolWait %s must be positive", o.PoolWait)
	}
	// The fields a reload may change are checked where a reload checks them.
	errs = append(errs, settingsOf(*o).problems()...)
	if o.CutThroughBytes < 0 {
		bad("CutThroughBytes %d must not be negative", o.CutThroughBytes)
	}
	if o.CutThroughBytes > 0 && o.CutThroughBudget <= 0 {
		bad("CutThroughBudget %d must be positive when CutThroughBytes is set", o.CutThroughBudget)
	}
	if o.MaxInflight < 1 || o.MaxInflight > maxInflight {
		bad("MaxInflight %d must be 1..%d", o.MaxInflight, maxInflight)
	}
	if o.MaxRewriteBytes <= 0 {
		bad("MaxRewriteBytes %d must be positive", o.MaxRewriteBytes)
	}
	if o.MaxUnauthenticatedBytes <= 0 {
		bad("MaxUnauthenticatedBytes %d must be positive", o.MaxUnauthenticatedBytes)
	}
	if o.UnmappedPort < 0 || o.UnmappedPort > 65535 {
		bad("UnmappedPort %d must be 0..65535", o.UnmappedPort)
	}
	for i, r := range o.Routes {
		if (r.TLS != nil || r.UpstreamTLS != nil) && o.TLSHandshakeTimeout <= 0 {
			bad("TLSHandshakeTimeout %s must be positive: Routes[%d] uses TLS", o.TLSHandshakeTimeout, i)
		}
		if r.TLS != nil && r.TLS.kind != kindServer {
			bad("Routes[%d].TLS: built by NewUpstreamTLS, not NewServerTLS", i)
		}
		if r.UpstreamTLS != nil && r.UpstreamTLS.kind != kindUpstream {
			bad("Routes[%d].UpstreamTLS: built by NewServerTLS, not NewUpstreamTLS", i)
		}
		if _, _, err := net.SplitHostPort(r.Listen); err != nil {
			bad("Routes[%d].Listen %q: %v", i, r.Listen, err)
		}
		if _, _, err := net.SplitHostPort(r.Upstream); err != nil {
			bad("Routes[%d].Upstream %q: %v", i, r.Upstream, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if o.Dial == nil {
		// No Timeout: every dial has a context bounded by the DialTimeout in force, which a reload
		// may raise past the one New saw.
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	return nil
}

// Options returns the options the server runs with: as New took them, with the Settings in force.
func (s *Server) Options() Options {
	return s.opts.WithSettings(*s.live())
}

// WithSettings returns o with the fields of st in place of its own: the one place a Settings becomes
// Options, for Server.Options and for a caller that builds Options from the Settings it reloads.
func (o Options) WithSettings(st Settings) Options {
	o.Policy, o.Weights = st.Policy, st.Weights
	o.HeaderTimeout, o.FrameTimeout, o.IdleTimeout = st.HeaderTimeout, st.FrameTimeout, st.IdleTimeout
	o.DialTimeout, o.WriteTimeout, o.RequestTimeout = st.DialTimeout, st.WriteTimeout, st.RequestTimeout
	o.MaxLocalAnswerBytes = st.MaxLocalAnswerBytes
	return o
}

package config

import (
	"net/netip"
	"time"
)

// Config is the whole kafkaguard configuration, as Load returns it and the
// rest of the program reads it. It holds plain values only; nothing in it
// refers to koanf.
type Config struct {
	Listeners []Listener `koanf:"listeners"`
	Admin     Admin      `koanf:"admin"`
	Limits    Limits     `koanf:"limits"`
	Timeouts  Timeouts   `koanf:"timeouts"`
	Pool      Pool       `koanf:"pool"`
	Proxy     Proxy      `koanf:"proxy"`
	Rewrite   Rewrite    `koanf:"rewrite"`
	Abuse     Abuse      `koanf:"abuse"`
	Log       Log        `koanf:"log"`
}

// Listener pairs one client-facing address with the broker behind it.
type Listener struct {
	// Address is the host:port clients connect to, e.g. "0.0.0.0:9092". Required.
	// Port 0 (an ephemeral port) is accepted for tests.
	Address string `koanf:"address"`
	// Upstream is the host:port of the broker this listener fronts. Required.
	Upstream string `koanf:"upstream"`
	// Advertised is the host:port told to clients in metadata for this broker.
	// Empty means the proxy derives it from Address.
	Advertised string `koanf:"advertised"`
	// NodeID, when set, is the broker's node id, so metadata entries are matched
	// by id rather than by host and port. Nil means match by address.
	NodeID *int32 `koanf:"node_id"`
	// TLS, when set, makes clients speak TLS to this listener; nil means
	// plaintext. See ListenerTLS.
	TLS *ListenerTLS `koanf:"tls"`
	// UpstreamTLS, when set, makes kafkaguard speak TLS to the broker; nil
	// means plaintext. See UpstreamTLS.
	UpstreamTLS *UpstreamTLS `koanf:"upstream_tls"`
	// SASL is passthrough (the default, also "") or require: see
	// SASLPassthrough and SASLRequire.
	SASL string `koanf:"sasl"`
}

// Admin configures the admin HTTP server (/metrics, /healthz, /readyz).
type Admin struct {
	// Address is the host:port to serve on. Default "127.0.0.1:9644"; the empty
	// string disables the admin server. It serves endpoints that lift and add
	// bans: keep it on loopback, or set TokenFile.
	Address string `koanf:"address"`
	// TokenFile, when set, names a file holding the admin API's bearer token
	// (one trailing newline is trimmed; an empty token is an error). Then
	// every endpoint that changes state or costs much (DELETE /bans/, POST
	// /bans, POST /lift, POST /debug/free-os-memory, /debug/pprof/) needs
	// "Authorization: Bearer <token>". Read at start and on every reload.
	// Default "" (no token: whoever reaches Address may use them).
	TokenFile string `koanf:"token_file"`
	// ProtectReads makes the read endpoints of Address (GET /, /bans,
	// /config, /metrics) need the token too; /healthz and /readyz stay open
	// for probes. Needs TokenFile. Default false.
	ProtectReads bool `koanf:"protect_reads"`
	// MetricsAddress, when set, is a second host:port serving only the
	// read-only /metrics, /healthz and /readyz, for Prometheus and probes
	// from outside the pod while Address stays on loopback. Default "" (off).
	MetricsAddress string `koanf:"metrics_address"`
}

// Limits are the size policy applied to every request frame.
type Limits struct {
	// MaxRequestBytes caps every request frame (the size prefix excluded) whose
	// API has no entry in API. Default 1MiB; 16B..1GiB.
	MaxRequestBytes Size `koanf:"max_request_bytes"`
	// API overrides MaxRequestBytes per API, keyed by kmsg's name for it,
	// e.g. {"Metadata": 64 * KiB}. An entry may be larger than MaxRequestBytes.
	// Nil means no overrides.
	API map[string]Size `koanf:"api"`
	// MaxClientIDBytes caps the client id in request headers. Default 256;
	// 0..32767, and 0 = no limit beyond the 32767 bytes the header's int16
	// length carries (as 0 means no cap elsewhere; "no client id at all"
	// would refuse every common client, which all send one by default).
	MaxClientIDBytes int `koanf:"max_client_id_bytes"`
	// MaxDrainBytes caps how much of an over-limit Produce the proxy reads and
	// discards to answer it with MESSAGE_TOO_LARGE; past it, the connection is
	// closed instead. Zero (the default) means 4 x the Produce limit; see
	// Config.EffectiveMaxDrain.
	MaxDrainBytes Size `koanf:"max_drain_bytes"`
	// MaxLocalAnswerBytes caps the MESSAGE_TOO_LARGE answer kafkaguard builds
	// for an oversized Produce (its size follows the partitions the request
	// names); a request whose answer would be larger closes the connection
	// (answer_too_large). It is also how much of the pool a connection's
	// unread answers may hold before its requests stop being read.
	// Default 64KiB; 1KiB..16MiB.
	MaxLocalAnswerBytes Size `koanf:"max_local_answer_bytes"`
	// DenyAPI lists kmsg API names refused outright, whatever their size.
	DenyAPI []string `koanf:"deny_api"`
	// UnknownAPI says what to do with an API key kmsg does not know: "close"
	// (the default) or "forward".
	UnknownAPI string `koanf:"unknown_api"`
	// MaxUnauthenticatedBytes caps each request (and each header-less SASL
	// v0 token frame) a connection sends before the broker has accepted its
	// authentication, below Kafka's own 512KiB. Default 64KiB; 1KiB..16MiB.
	MaxUnauthenticatedBytes Size `koanf:"max_unauthenticated_bytes"`
}

// Timeouts bound each wait the proxy makes on a peer. All must be positive.
type Timeouts struct {
	// Header bounds reading a request's size prefix and header once its first
	// byte arrived. Default 10s.
	Header time.Duration `koanf:"header"`
	// Frame bounds reading one whole request frame. Default 30s.
	Frame time.Duration `koanf:"frame"`
	// Idle closes a connection with no request and nothing in flight for this
	// long. Default 10m.
	Idle time.Duration `koanf:"idle"`
	// Dial bounds connecting to the upstream broker. Default 5s.
	Dial time.Duration `koanf:"dial"`
	// Write bounds writes to the peers. To a client, responses go in steps
	// of at most 256 KiB, each of which must complete within it: a client
	// reading a large response slowly but steadily is served, one that
	// takes less than a step in this long (or stops reading) is cut. To the
	// broker, each write of a request (a whole frame, or one chunk of a
	// frame cut through) must complete within it. Default 30s.
	Write time.Duration `koanf:"write"`
	// Shutdown bounds the graceful drain on exit. Default 30s.
	Shutdown time.Duration `koanf:"shutdown"`
	// Request bounds how long the broker may owe the oldest response on a
	// connection (and, inside a response, go without sending a byte, but
	// never less than timeouts.write plus a second there, so a slow client
	// is not blamed on the broker); past it the connection is closed as
	// request_timeout. Default 10m. It must
	// exceed the longest time a broker legitimately holds a request: a
	// JoinGroup (and the SyncGroup after it) waits up to the group's
	// rebalance timeout, which consumers set to max.poll.interval.ms (Kafka's
	// default 5m, Kafka Streams' far more), so raise it above the largest
	// max.poll.interval.ms of the clients behind kafkaguard.
	Request time.Duration `koanf:"request"`
	// TLSHandshake bounds a client's TLS handshake from accept, and the
	// handshake with a TLS broker. Default 10s.
	TLSHandshake time.Duration `koanf:"tls_handshake"`
}

// Pool sizes the one chunk pool all frames move through: the proxy's memory
// budget for frame data.
type Pool struct {
	// ChunkBytes is the size of one chunk. Default 32KiB; 1KiB..16MiB.
	ChunkBytes Size `koanf:"chunk_bytes"`
	// TotalBytes is the whole budget. Default 64MiB; at least ChunkBytes and at
	// least the largest request limit, so one whole frame can be stored.
	TotalBytes Size `koanf:"total_bytes"`
	// Wait is how long a connection blocks for chunks when the budget is spent
	// before it is closed. Default 5s; must be positive.
	Wait time.Duration `koanf:"wait"`
}

// Proxy tunes the per-connection pumps.
type Proxy struct {
	// CutThroughBytes: 0 (the default) stores and forwards every frame up to
	// its limit, so the broker never sees a prefix for bytes that may never
	// come; otherwise frames larger than this are cut through as they arrive.
	// When set it must be at least Pool.ChunkBytes.
	CutThroughBytes Size `koanf:"cut_through_bytes"`
	// CutThroughBudget bounds what frames cut through may owe the brokers
	// at once: the declared sizes of those under way, summed over the
	// listeners. A frame that would go over it is stored and forwarded
	// instead. Default 64MiB; positive, and larger than CutThroughBytes + 4
	// when that is set.
	CutThroughBudget Size `koanf:"cut_through_budget"`
	// MaxInflight caps requests awaiting a response per connection. Default
	// 128; 1..65536.
	MaxInflight int `koanf:"max_inflight"`
	// MaxRewriteBytes caps a Metadata, FindCoordinator or DescribeCluster
	// response decoded to rewrite broker addresses. Default 16MiB; 16B..1GiB.
	MaxRewriteBytes Size `koanf:"max_rewrite_bytes"`
}

// Rewrite configures how broker addresses in responses are rewritten.
type Rewrite struct {
	// UnmappedPort: 0 (the default) leaves brokers that no listener fronts
	// unchanged (and warns); otherwise they are advertised at their own host
	// with this port, as when a kafkaguard sidecar runs next to every broker.
	UnmappedPort int `koanf:"unmapped_port"`
}

// Abuse configures per-source offence counting, bans and connection caps.
type Abuse struct {
	// Enabled turns bans and per-IP caps on. Default true.
	Enabled bool `koanf:"enabled"`
	// OffencesBeforeBan is the weighted offence count within OffenceWindow that
	// triggers a ban. Default 5; must be positive.
	OffencesBeforeBan float64 `koanf:"offences_before_ban"`
	// OffenceWindow is how far back offences count. Default 1m.
	OffenceWindow time.Duration `koanf:"offence_window"`
	// BanMin is the first ban's length; each further ban doubles, up to BanMax.
	// Default 30s.
	BanMin time.Duration `koanf:"ban_min"`
	// BanMax caps a ban's length. Default 1h; at least BanMin.
	BanMax time.Duration `koanf:"ban_max"`
	// ForgetAfter is the clean stretch after which a source's ban history is
	// forgotten. Default 1h.
	ForgetAfter time.Duration `koanf:"forget_after"`
	// MaxConnectionsPerIP caps concurrent connections from one source (an
	// address, or a prefix: see IPv4Prefix and IPv6Prefix). Default
	// 1000; 0 means no cap.
	MaxConnectionsPerIP int `koanf:"max_connections_per_ip"`
	// ConnectionRatePerIP caps new connections per source; the burst is Count.
	// Default 50/s; the zero Rate means no cap.
	ConnectionRatePerIP Rate `koanf:"connection_rate_per_ip"`
	// Allow lists sources never banned or capped. A bare IP means /32 or /128.
	// Prefixes are stored masked (10.1.2.3/8 becomes 10.0.0.0/8).
	Allow []netip.Prefix `koanf:"allow"`
	// MaxTrackedSources bounds the sources tracked at once, so a spray of
	// addresses cannot grow memory without end. Default 50000 (at most about 24 MB
	// of heap, well inside the 64 MiB margin over the pool); at least 1.
	MaxTrackedSources int `koanf:"max_tracked_sources"`
	// Weights price each kind of offence.
	Weights Weights `koanf:"weights"`
	// IPv4Prefix is how many leading bits of an IPv4 address make one source:
	// its addresses share one offence count, ban, connection cap and rate.
	// Default 32 (each address alone); 8..32.
	IPv4Prefix int `koanf:"ipv4_prefix"`
	// IPv6Prefix is the same for IPv6. Default 64: one host commonly holds a
	// whole /64, and judging its 2^64 addresses one by one would let it dodge
	// every ban and fill max_tracked_sources. 16..128.
	IPv6Prefix int `koanf:"ipv6_prefix"`
}

// Weights are what each kind of offence adds to a source's count. A weight of
// 0 makes that kind harmless; none may be negative.
type Weights struct {
	// Closed is an offence that closed the connection. Default 1.
	Closed float64 `koanf:"closed"`
	// RejectedProduce is a Produce answered with MESSAGE_TOO_LARGE. Default 0.25.
	RejectedProduce float64 `koanf:"rejected_produce"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info (the default), warn or error.
	Level string `koanf:"level"`
	// Format is json (the default) or console.
	Format string `koanf:"format"`
}

// Default returns the configuration used for every key the file and the
// environment leave unset. It has no listeners, so it only validates once
// one is added. It is the only place defaults live: proxy.Options and
// limits.GateOptions take every value as given (cmd/internal/app copies them
// from the Config) and refuse, rather than replace, one out of range.
func Default() Config {
	return Config{
		Admin: Admin{Address: "127.0.0.1:9644"},
		Limits: Limits{
			MaxRequestBytes:  1 * MiB,
			MaxClientIDBytes: 256,
			UnknownAPI:       UnknownAPIClose,

			MaxLocalAnswerBytes: 64 * KiB,

			MaxUnauthenticatedBytes: 64 * KiB,
		},
		Timeouts: Timeouts{
			Header:   10 * time.Second,
			Frame:    30 * time.Second,
			Idle:     10 * time.Minute,
			Dial:     5 * time.Second,
			Write:    30 * time.Second,
			Shutdown: 30 * time.Second,
			Request:  10 * time.Minute,

			TLSHandshake: 10 * time.Second,
		},
		Pool: Pool{ChunkBytes: 32 * KiB, TotalBytes: 64 * MiB, Wait: 5 * time.Second},
		Proxy: Proxy{
			CutThroughBudget: 64 * MiB,
			MaxInflight:      128,
			MaxRewriteBytes:  16 * MiB,
		},
		Abuse: Abuse{
			Enabled:             true,
			OffencesBeforeBan:   5,
			OffenceWindow:       time.Minute,
			BanMin:              30 * time.Second,
			BanMax:              time.Hour,
			ForgetAfter:         time.Hour,
			MaxConnectionsPerIP: 1000,
			ConnectionRatePerIP: Rate{Count: 50, Per: time.Second},
			MaxTrackedSources:   50000,
			Weights:             Weights{Closed: 1, RejectedProduce: 0.25},
			IPv4Prefix:          32,
			IPv6Prefix:          64,
		},
		Log: Log{Level: "info", Format: "json"},
	}
}

// Values of Limits.UnknownAPI.
const (
	// UnknownAPIClose closes a connection that sends an API key kmsg does not know.
	UnknownAPIClose = "close"
	// UnknownAPIForward passes such requests to the broker under the global limit.
	UnknownAPIForward = "forward"
)

// APILimit returns the effective size limit for the API with the given kmsg
// name: its entry in Limits.API, else Limits.MaxRequestBytes.
func (c Config) APILimit(name string) Size {
	if s, ok := c.Limits.API[name]; ok {
		return s
	}
	return c.Limits.MaxRequestBytes
}

// EffectiveMaxDrain returns Limits.MaxDrainBytes, or 4 x the Produce limit
// when it is zero.
func (c Config) EffectiveMaxDrain() Size {
	if c.Limits.MaxDrainBytes != 0 {
		return c.Limits.MaxDrainBytes
	}
	return 4 * c.APILimit("Produce")
}

package config

import (
	"errors"
	"math"
	"net/netip"
	"testing"
	"time"
)

func TestDefaultValidatesWithOneListener(t *testing.T) {
	if err := Default().Validate(); err == nil {
		t.Fatal("Default() without listeners validated")
	}
	if err := withListener().Validate(); err != nil {
		t.Fatalf("Default() with a listener: %v", err)
	}
}

func int32p(v int32) *int32 { return &v }

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		key    string
		want   string
	}{
		{"no listeners", func(c *Config) { c.Listeners = nil }, "listeners", "at least one listener"},
		{"address missing", func(c *Config) { c.Listeners[0].Address = "" }, "listeners[0].address", "required"},
		{"address no port", func(c *Config) { c.Listeners[0].Address = "0.0.0.0" }, "listeners[0].address", "not host:port"},
		{"address named port", func(c *Config) { c.Listeners[0].Address = "0.0.0.0:kafka" }, "listeners[0].address", "port must be a number"},
		{"address port too big", func(c *Config) { c.Listeners[0].Address = "0.0.0.0:70000" }, "listeners[0].address", "port must be a number"},
		{"upstream missing", func(c *Config) { c.Listeners[0].Upstream = "" }, "listeners[0].upstream", "required"},
		{"upstream no host", func(c *Config) { c.Listeners[0].Upstream = ":19092" }, "listeners[0].upstream", "host is missing"},
		{"upstream port 0", func(c *Config) { c.Listeners[0].Upstream = "127.0.0.1:0" }, "listeners[0].upstream", "port must be a number 1..65535"},
		{"advertised bad", func(c *Config) { c.Listeners[0].Advertised = "kafka-1" }, "listeners[0].advertised", "not host:port"},
		{"node id negative", func(c *Config) { c.Listeners[0].NodeID = int32p(-1) }, "listeners[0].node_id", "negative"},
		{"duplicate address", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Address: "0.0.0.0:9092", Upstream: "127.0.0.1:19093"})
		}, "listeners[1].address", "duplicate of listeners[0]"},
		{"wildcard overlap", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Address: "127.0.0.1:9092", Upstream: "127.0.0.1:19093"})
		}, "listeners[1].address", "overlaps listeners[0]"},
		{"duplicate upstream", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Address: "0.0.0.0:9093", Upstream: "127.0.0.1:19092"})
		}, "listeners[1].upstream", "duplicate of listeners[0]"},
		{"duplicate advertised", func(c *Config) {
			c.Listeners[0].Advertised = "k:9092"
			c.Listeners = append(c.Listeners, Listener{Address: "0.0.0.0:9093", Upstream: "127.0.0.1:19093", Advertised: "K:9092"})
		}, "listeners[1].advertised", "duplicate of listeners[0]"},
		{"duplicate node id", func(c *Config) {
			c.Listeners[0].NodeID = int32p(1)
			c.Listeners = append(c.Listeners, Listener{Address: "0.0.0.0:9093", Upstream: "127.0.0.1:19093", NodeID: int32p(1)})
		}, "listeners[1].node_id", "duplicate of listeners[0]"},
		{"admin collides", func(c *Config) { c.Admin.Address = "127.0.0.1:9092" }, "admin.address", "collides with listeners[0].address"},
		{"admin bad", func(c *Config) { c.Admin.Address = "localhost" }, "admin.address", "not host:port"},
		{"max request too small", func(c *Config) { c.Limits.MaxRequestBytes = 15 }, "limits.max_request_bytes", "between 16B and 1GiB, got 15B"},
		{"max request too big", func(c *Config) { c.Limits.MaxRequestBytes = GiB + 1 }, "limits.max_request_bytes", "between 16B and 1GiB"},
		{"api limit unknown name", func(c *Config) { c.Limits.API = map[string]Size{"Metadta": KiB} }, "limits.api.Metadta", "unknown API name (did you mean Metadata?)"},
		{"api limit wrong case", func(c *Config) { c.Limits.API = map[string]Size{"metadata": KiB} }, "limits.api.metadata", "did you mean Metadata?"},
		{"api limit too small", func(c *Config) { c.Limits.API = map[string]Size{"Metadata": 8} }, "limits.api.Metadata", "between 16B and 1GiB"},
		{"api limit too big", func(c *Config) { c.Limits.API = map[string]Size{"Produce": 2 * GiB} }, "limits.api.Produce", "between 16B and 1GiB"},
		{"client id negative", func(c *Config) { c.Limits.MaxClientIDBytes = -1 }, "limits.max_client_id_bytes", "between 0 and 32767"},
		{"client id too long", func(c *Config) { c.Limits.MaxClientIDBytes = 32768 }, "limits.max_client_id_bytes", "between 0 and 32767"},
		{"drain negative", func(c *Config) { c.Limits.MaxDrainBytes = -1 }, "limits.max_drain_bytes", "negative"},
		{"local answer tiny", func(c *Config) { c.Limits.MaxLocalAnswerBytes = 100 }, "limits.max_local_answer_bytes", "between"},
		{"deny unknown", func(c *Config) { c.Limits.DenyAPI = []string{"Produce", "CreateTopic"} }, "limits.deny_api[1]", "unknown API name (did you mean CreateTopics?)"},
		{"unknown_api bad", func(c *Config) { c.Limits.UnknownAPI = "drop" }, "limits.unknown_api", `must be close or forward, got "drop"`},
		{"timeout zero", func(c *Config) { c.Timeouts.Dial = 0 }, "timeouts.dial", "positive"},
		{"timeout negative", func(c *Config) { c.Timeouts.Shutdown = -time.Second }, "timeouts.shutdown", "positive"},
		{"request timeout zero", func(c *Config) { c.Timeouts.Request = 0 }, "timeouts.request", "positive"},
		{"chunk too small", func(c *Config) { c.Pool.ChunkBytes = 512 }, "pool.chunk_bytes", "between 1KiB and 16MiB"},
		{"chunk too big", func(c *Config) { c.Pool.ChunkBytes = 32 * MiB; c.Pool.TotalBytes = GiB }, "pool.chunk_bytes", "between 1KiB and 16MiB"},
		{"total below chunk", func(c *Config) { c.Pool.ChunkBytes = 16 * MiB; c.Pool.TotalBytes = 8 * MiB }, "pool.total_bytes", "at least pool.chunk_bytes"},
		{"total below request limit", func(c *Config) { c.Pool.TotalBytes = 512 * KiB }, "pool.total_bytes", "at least limits.max_request_bytes (1MiB)"},
		{"total below api limit", func(c *Config) { c.Limits.API = map[string]Size{"Produce": 128 * MiB} }, "pool.total_bytes", "at least limits.api.Produce (128MiB)"},
		{"pool wait zero", func(c *Config) { c.Pool.Wait = 0 }, "pool.wait", "positive"},
		{"cut through below chunk", func(c *Config) { c.Proxy.CutThroughBytes = KiB }, "proxy.cut_through_bytes", "at least pool.chunk_bytes (32KiB)"},
		{"cut through negative", func(c *Config) { c.Proxy.CutThroughBytes = -1 }, "proxy.cut_through_bytes", "must be 0"},
		{"cut through budget zero", func(c *Config) { c.Proxy.CutThroughBudget = 0 }, "proxy.cut_through_budget", "must be positive"},
		{"cut through budget below a frame", func(c *Config) { c.Proxy.CutThroughBytes, c.Proxy.CutThroughBudget = MiB, MiB }, "proxy.cut_through_budget", "larger than proxy.cut_through_bytes + 4"},
		{"inflight zero", func(c *Config) { c.Proxy.MaxInflight = 0 }, "proxy.max_inflight", "between 1 and 65536"},
		{"inflight too many", func(c *Config) { c.Proxy.MaxInflight = 65537 }, "proxy.max_inflight", "between 1 and 65536"},
		{"rewrite bytes zero", func(c *Config) { c.Proxy.MaxRewriteBytes = 0 }, "proxy.max_rewrite_bytes", "between 16B and 1GiB"},
		{"unmapped port", func(c *Config) { c.Rewrite.UnmappedPort = 70000 }, "rewrite.unmapped_port", "port 1..65535"},
		{"offences zero", func(c *Config) { c.Abuse.OffencesBeforeBan = 0 }, "abuse.offences_before_ban", "positive"},
		{"offences NaN", func(c *Config) { c.Abuse.OffencesBeforeBan = math.NaN() }, "abuse.offences_before_ban", "positive"},
		{"window zero", func(c *Config) { c.Abuse.OffenceWindow = 0 }, "abuse.offence_window", "positive"},
		{"ban min zero", func(c *Config) { c.Abuse.BanMin = 0 }, "abuse.ban_min", "positive"},
		{"ban min above max", func(c *Config) { c.Abuse.BanMin = 2 * time.Hour }, "abuse.ban_max", "at least abuse.ban_min (2h0m0s)"},
		{"forget zero", func(c *Config) { c.Abuse.ForgetAfter = 0 }, "abuse.forget_after", "positive"},
		{"max conns negative", func(c *Config) { c.Abuse.MaxConnectionsPerIP = -1 }, "abuse.max_connections_per_ip", "negative"},
		{"rate without interval", func(c *Config) { c.Abuse.ConnectionRatePerIP = Rate{Count: 5} }, "abuse.connection_rate_per_ip", "positive count per positive interval"},
		{"rate negative", func(c *Config) { c.Abuse.ConnectionRatePerIP = Rate{Count: -5, Per: time.Second} }, "abuse.connection_rate_per_ip", "positive count"},
		{"allow invalid", func(c *Config) { c.Abuse.Allow = []netip.Prefix{{}} }, "abuse.allow[0]", "invalid CIDR"},
		{"tracked zero", func(c *Config) { c.Abuse.MaxTrackedSources = 0 }, "abuse.max_tracked_sources", "at least 1"},
		{"weight negative", func(c *Config) { c.Abuse.Weights.Closed = -1 }, "abuse.weights.closed", ">= 0"},
		{"weight NaN", func(c *Config) { c.Abuse.Weights.RejectedProduce = math.NaN() }, "abuse.weights.rejected_produce", ">= 0"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level", "debug, info, warn or error"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "json or console"},
		{"ipv4 prefix zero", func(c *Config) { c.Abuse.IPv4Prefix = 0 }, "abuse.ipv4_prefix", "must be 8..32"},
		{"ipv4 prefix too long", func(c *Config) { c.Abuse.IPv4Prefix = 33 }, "abuse.ipv4_prefix", "got 33"},
		{"ipv6 prefix too wide", func(c *Config) { c.Abuse.IPv6Prefix = 8 }, "abuse.ipv6_prefix", "must be 16..128"},
		{"ipv6 prefix too long", func(c *Config) { c.Abuse.IPv6Prefix = 129 }, "abuse.ipv6_prefix", "got 129"},
		{"metrics address bad", func(c *Config) { c.Admin.MetricsAddress = "9645" }, "admin.metrics_address", "not host:port"},
		{"metrics address is admin", func(c *Config) { c.Admin.MetricsAddress = "0.0.0.0:9644" }, "admin.metrics_address", "collides with admin.address"},
		{"metrics address is a listener", func(c *Config) { c.Admin.MetricsAddress = "10.1.2.3:9092" }, "admin.metrics_address", "collides with listeners[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withListener()
			tt.modify(&c)
			err := c.Validate()
			wantProblem(t, err, tt.key, tt.want)
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownAPI) {
				t.Fatalf("error %v matches neither ErrInvalid nor ErrUnknownAPI", err)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
	}{
		{"admin disabled", func(c *Config) { c.Admin.Address = "" }},
		{"metrics address apart", func(c *Config) { c.Admin.MetricsAddress = "0.0.0.0:9645" }},
		{"prefixes at their bounds", func(c *Config) { c.Abuse.IPv4Prefix, c.Abuse.IPv6Prefix = 8, 128 }},
		{"ephemeral ports", func(c *Config) {
			c.Listeners = []Listener{
				{Address: "127.0.0.1:0", Upstream: "127.0.0.1:19092"},
				{Address: "127.0.0.1:0", Upstream: "127.0.0.1:19093"},
			}
			c.Admin.Address = "127.0.0.1:0"
		}},
		{"distinct hosts same port", func(c *Config) {
			c.Listeners = []Listener{
				{Address: "127.0.0.2:9092", Upstream: "127.0.0.1:19092"},
				{Address: "127.0.0.3:9092", Upstream: "127.0.0.1:19093"},
			}
		}},
		{"ipv6", func(c *Config) {
			c.Listeners[0] = Listener{Address: "[::]:9092", Upstream: "[::1]:19092", Advertised: "[2001:db8::1]:9092"}
		}},
		{"limits at bounds", func(c *Config) {
			c.Limits.MaxRequestBytes = 16
			c.Limits.API = map[string]Size{"Produce": GiB}
			c.Pool.TotalBytes = GiB
			c.Limits.MaxClientIDBytes = 0
		}},
		{"chunk bounds", func(c *Config) { c.Pool.ChunkBytes = 16 * MiB; c.Proxy.CutThroughBytes = 16 * MiB }},
		{"unlimited rate and no caps", func(c *Config) { c.Abuse.ConnectionRatePerIP = Rate{}; c.Abuse.MaxConnectionsPerIP = 0 }},
		{"zero weights", func(c *Config) { c.Abuse.Weights = Weights{} }},
		{"forward unknown", func(c *Config) { c.Limits.UnknownAPI = UnknownAPIForward }},
		{"ban min equals max", func(c *Config) { c.Abuse.BanMin = time.Hour }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withListener()
			tt.modify(&c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateListsAllProblems(t *testing.T) {
	c := withListener()
	c.Listeners = append(c.Listeners, Listener{Address: "0.0.0.0:9092", Upstream: "127.0.0.1:19092"})
	c.Limits.API = map[string]Size{"Metadta": KiB}
	c.Pool.ChunkBytes = 100
	c.Abuse.BanMin = 2 * time.Hour
	c.Log.Format = "xml"
	err := c.Validate()
	for _, p := range []struct{ key, want string }{
		{"listeners[1].address", "duplicate of listeners[0]"},
		{"listeners[1].upstream", "duplicate of listeners[0]"},
		{"limits.api.Metadta", "did you mean Metadata?"},
		{"pool.chunk_bytes", "between"},
		{"abuse.ban_max", "at least abuse.ban_min"},
		{"log.format", "json or console"},
	} {
		wantProblem(t, err, p.key, p.want)
	}
	if n := len(keyErrors(t, err)); n != 6 {
		t.Fatalf("got %d problems, want 6:\n%v", n, err)
	}
}

func TestAPILimit(t *testing.T) {
	c := withListener()
	c.Limits.API = map[string]Size{"Metadata": 64 * KiB}
	if got := c.APILimit("Metadata"); got != 64*KiB {
		t.Errorf("APILimit(Metadata) = %s", got)
	}
	if got := c.APILimit("Produce"); got != MiB {
		t.Errorf("APILimit(Produce) = %s, want the global 1MiB", got)
	}
}

func TestEffectiveMaxDrain(t *testing.T) {
	c := withListener()
	if got := c.EffectiveMaxDrain(); got != 4*MiB {
		t.Errorf("default EffectiveMaxDrain = %s, want 4MiB", got)
	}
	c.Limits.API = map[string]Size{"Produce": 2 * MiB}
	if got := c.EffectiveMaxDrain(); got != 8*MiB {
		t.Errorf("EffectiveMaxDrain with Produce 2MiB = %s, want 8MiB", got)
	}
	c.Limits.MaxDrainBytes = 3 * MiB
	if got := c.EffectiveMaxDrain(); got != 3*MiB {
		t.Errorf("EffectiveMaxDrain with explicit 3MiB = %s", got)
	}
}

func TestAPIKey(t *testing.T) {
	tests := []struct {
		name string
		key  int16
		ok   bool
	}{
		{"Produce", 0, true},
		{"Metadata", 3, true},
		{"ApiVersions", 18, true},
		{"SASLHandshake", 17, true},
		{"SaslHandshake", 0, false},
		{"metadata", 0, false},
		{"Unknown", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, ok := APIKey(tt.name)
			if key != tt.key || ok != tt.ok {
				t.Fatalf("APIKey(%q) = %d, %v; want %d, %v", tt.name, key, ok, tt.key, tt.ok)
			}
		})
	}
}

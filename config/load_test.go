package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// briefExample is the user-facing example; it must load and validate as is.
const briefExample = `
listeners:
  - address: 0.0.0.0:9092
    upstream: 127.0.0.1:19092
admin:
  address: 127.0.0.1:9644
limits:
  max_request_bytes: 1MiB
  api: {Metadata: 64KiB}
  max_client_id_bytes: 256
timeouts: {header: 10s, frame: 30s, idle: 10m, dial: 5s}
pool: {chunk_bytes: 32KiB, total_bytes: 64MiB, wait: 5s}
log: {level: info, format: json}
abuse:
  offences_before_ban: 5
  offence_window: 1m
  ban_min: 30s
  ban_max: 1h
  max_connections_per_ip: 1000
  connection_rate_per_ip: 50/s
  allow: [10.0.0.0/8]
  max_tracked_sources: 50000
`

func TestLoadBriefExample(t *testing.T) {
	cfg, err := Load(writeFile(t, briefExample), nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := Default()
	want.Listeners = []Listener{{Address: "0.0.0.0:9092", Upstream: "127.0.0.1:19092"}}
	want.Limits.API = map[string]Size{"Metadata": 64 * KiB}
	want.Abuse.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("Load =\n%+v\nwant\n%+v", cfg, want)
	}
	if got := cfg.APILimit("Metadata"); got != 64*KiB {
		t.Fatalf("APILimit(Metadata) = %s, want 64KiB", got)
	}
}

// TestLoadDeployExample keeps deploy/kafkaguard.yaml loading and valid, so the
// documented example cannot drift from the code.
func TestLoadDeployExample(t *testing.T) {
	cfg, err := Load("../deploy/kafkaguard.yaml", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if len(cfg.Listeners) != 3 {
		t.Fatalf("listeners = %d, want 3", len(cfg.Listeners))
	}
	for i, l := range cfg.Listeners {
		wantAddr := "0.0.0.0:" + []string{"9092", "9093", "9094"}[i]
		wantUp := "127.0.0.1:" + []string{"19092", "19093", "19094"}[i]
		if l.Address != wantAddr || l.Upstream != wantUp {
			t.Errorf("listeners[%d] = %s -> %s, want %s -> %s", i, l.Address, l.Upstream, wantAddr, wantUp)
		}
	}
	// Every key the example leaves at its default must hold the default: the
	// comments there claim so.
	d := Default()
	if cfg.Timeouts != d.Timeouts || cfg.Pool != d.Pool || cfg.Proxy != d.Proxy || cfg.Rewrite != d.Rewrite || cfg.Log != d.Log {
		t.Errorf("example defaults drifted:\n%+v\nwant\n%+v", cfg, d)
	}
	if cfg.Limits.MaxRequestBytes != d.Limits.MaxRequestBytes || cfg.Limits.MaxClientIDBytes != d.Limits.MaxClientIDBytes ||
		cfg.Limits.MaxDrainBytes != d.Limits.MaxDrainBytes || cfg.Limits.UnknownAPI != d.Limits.UnknownAPI {
		t.Errorf("example limits drifted: %+v, want %+v", cfg.Limits, d.Limits)
	}
	a, da := cfg.Abuse, d.Abuse
	a.Allow, da.Allow = nil, nil
	if !reflect.DeepEqual(a, da) {
		t.Errorf("example abuse drifted: %+v, want %+v", a, da)
	}
	// And the whole of it: every key but the listeners and the per-API
	// examples is Default()'s ("set to its default unless noted").
	all := cfg
	all.Listeners, all.Limits.API = nil, nil
	if len(all.Limits.DenyAPI) == 0 {
		all.Limits.DenyAPI = nil
	}
	if len(all.Abuse.Allow) == 0 {
		all.Abuse.Allow = nil
	}
	if !reflect.DeepEqual(all, d) {
		t.Errorf("example drifted from Default():\n%+v\nwant\n%+v", all, d)
	}
}

func TestLoadNoPathGivesDefaults(t *testing.T) {
	cfg, err := Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, Default()) {
		t.Fatalf("Load(\"\") = %+v, want Default()", cfg)
	}
}

func TestLoadPartialKeepsDefaults(t *testing.T) {
	cfg, err := Load(writeFile(t, "timeouts: {idle: 1m}\nabuse: {weights: {closed: 2}}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timeouts.Idle != time.Minute || cfg.Timeouts.Header != 10*time.Second {
		t.Errorf("timeouts = %+v", cfg.Timeouts)
	}
	if cfg.Abuse.Weights != (Weights{Closed: 2, RejectedProduce: 0.25}) {
		t.Errorf("weights = %+v", cfg.Abuse.Weights)
	}
}

func TestLoadValues(t *testing.T) {
	cfg, err := Load(writeFile(t, `
listeners:
  - {address: ":9092", upstream: "broker-1:9092", advertised: "kafka-1.example.com:9092", node_id: 1}
limits:
  max_request_bytes: 2097152
  api: {Produce: 4MiB, ApiVersions: 1KB}
  deny_api: CreateTopics
  unknown_api: forward
abuse:
  enabled: false
  offences_before_ban: 2.5
  connection_rate_per_ip: unlimited
  allow: [127.0.0.1, "::1", 10.1.2.3/8]
proxy: {cut_through_bytes: 256KiB}
rewrite: {unmapped_port: 9092}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if l.NodeID == nil || *l.NodeID != 1 || l.Advertised != "kafka-1.example.com:9092" {
		t.Errorf("listener = %+v", l)
	}
	if cfg.Limits.MaxRequestBytes != 2*MiB || cfg.APILimit("Produce") != 4*MiB || cfg.APILimit("ApiVersions") != 1000 {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	if !reflect.DeepEqual(cfg.Limits.DenyAPI, []string{"CreateTopics"}) || cfg.Limits.UnknownAPI != "forward" {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	wantAllow := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"),
	}
	a := cfg.Abuse
	if a.Enabled || a.OffencesBeforeBan != 2.5 || !a.ConnectionRatePerIP.Unlimited() || !reflect.DeepEqual(a.Allow, wantAllow) {
		t.Errorf("abuse = %+v", a)
	}
	if cfg.Proxy.CutThroughBytes != 256*KiB || cfg.Rewrite.UnmappedPort != 9092 {
		t.Errorf("proxy/rewrite = %+v %+v", cfg.Proxy, cfg.Rewrite)
	}
}

func TestLoadErrors(t *testing.T) {
	const listener = "listeners: [{address: 0.0.0.0:9092, upstream: 127.0.0.1:19092}]\n"
	tests := []struct {
		name, yaml, key, want string
		sentinel              error
	}{
		{"unknown top-level key", "listners: []\n", "listners", "unknown key (did you mean listeners?)", ErrUnknownKey},
		{"unknown nested key", "limits: {max_reqest_bytes: 1MiB}\n", "limits.max_reqest_bytes", "unknown key (did you mean max_request_bytes?)", ErrUnknownKey},
		{"key case matters", "limits: {Max_Request_Bytes: 1MiB}\n", "limits.Max_Request_Bytes", "did you mean max_request_bytes?", ErrUnknownKey},
		{"unknown deep key", "abuse: {weights: {closd: 1}}\n", "abuse.weights.closd", "did you mean closed?", ErrUnknownKey},
		{"unknown listener key", "listeners: [{address: 0.0.0.0:9092, upstream: 127.0.0.1:19092, adress: x}]\n", "listeners[0].adress", "did you mean address?", ErrUnknownKey},
		{"bad size unit", "limits: {max_request_bytes: 12XB}\n", "limits.max_request_bytes", `invalid size "12XB": unknown unit`, ErrInvalidSize},
		{"negative size", "limits: {max_request_bytes: -5}\n", "limits.max_request_bytes", "negative", ErrInvalidSize},
		{"negative size string", "pool: {chunk_bytes: -5KiB}\n", "pool.chunk_bytes", "negative", ErrInvalidSize},
		{"overflowing size", "pool: {total_bytes: 9999999999TiB}\n", "pool.total_bytes", "too large", ErrInvalidSize},
		{"overflowing size number", "pool: {total_bytes: 99999999999999999999}\n", "pool.total_bytes", "8EiB", ErrInvalidSize},
		{"fractional size", "pool: {chunk_bytes: 1.5}\n", "pool.chunk_bytes", "whole number", ErrInvalidSize},
		{"bad api size", "limits: {api: {Produce: 1XB}}\n", "limits.api.Produce", "invalid size", ErrInvalidSize},
		{"size as mapping", "limits: {max_request_bytes: {a: 1}}\n", "limits.max_request_bytes", "expected a size", ErrInvalidSize},
		{"bad duration", "timeouts: {frame: 30x}\n", "timeouts.frame", `invalid duration "30x"`, ErrInvalid},
		{"duration without unit", "timeouts: {header: 10}\n", "timeouts.header", "needs a unit", ErrInvalid},
		{"bad rate", "abuse: {connection_rate_per_ip: 50/fortnight}\n", "abuse.connection_rate_per_ip", "invalid rate", ErrInvalidRate},
		{"rate without interval", "abuse: {connection_rate_per_ip: 50}\n", "abuse.connection_rate_per_ip", "invalid rate", ErrInvalidRate},
		{"bad CIDR", "abuse: {allow: [10.0.0.0/33]}\n", "abuse.allow[0]", `invalid CIDR "10.0.0.0/33"`, ErrInvalid},
		{"bad IP", "abuse: {allow: [10.0.0.1, nonsense]}\n", "abuse.allow[1]", `invalid CIDR "nonsense"`, ErrInvalid},
		{"bad bool", "abuse: {enabled: maybe}\n", "abuse.enabled", "true or false", ErrInvalid},
		{"bad int", "limits: {max_client_id_bytes: lots}\n", "limits.max_client_id_bytes", "whole number", ErrInvalid},
		{"fractional int", "proxy: {max_inflight: 1.5}\n", "proxy.max_inflight", "whole number", ErrInvalid},
		{"node id out of range", "listeners: [{address: 0.0.0.0:9092, upstream: 127.0.0.1:19092, node_id: 5000000000}]\n", "listeners[0].node_id", "out of range", ErrInvalid},
		{"bad float", "abuse: {offences_before_ban: many}\n", "abuse.offences_before_ban", "expected a number", ErrInvalid},
		{"nan float", "abuse: {weights: {closed: .nan}}\n", "abuse.weights.closed", "finite", ErrInvalid},
		{"string expected", "log: {level: 3}\n", "log.level", "expected a string", ErrInvalid},
		{"section as scalar", "limits: 5\n", "limits", "expected a mapping", ErrInvalid},
		{"list as mapping", "listeners: {address: 0.0.0.0:9092}\n", "listeners", "expected a list", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.yaml
			if !strings.HasPrefix(text, "listeners:") {
				text = listener + text
			}
			_, err := Load(writeFile(t, text), nil)
			wantProblem(t, err, tt.key, tt.want)
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("error %v does not match %v", err, tt.sentinel)
			}
		})
	}
}

func TestLoadReportsAllProblems(t *testing.T) {
	_, err := Load(writeFile(t, `
listners: []
limits: {max_reqest_bytes: 1MiB, max_request_bytes: 12XB}
timeouts: {frame: 30x}
abuse: {allow: [nonsense], connection_rate_per_ip: fast}
`), nil)
	for _, p := range []struct{ key, want string }{
		{"listners", "unknown key"},
		{"limits.max_reqest_bytes", "unknown key"},
		{"limits.max_request_bytes", "invalid size"},
		{"timeouts.frame", "invalid duration"},
		{"abuse.allow[0]", "invalid CIDR"},
		{"abuse.connection_rate_per_ip", "invalid rate"},
	} {
		wantProblem(t, err, p.key, p.want)
	}
	if n := len(keyErrors(t, err)); n != 6 {
		t.Fatalf("got %d problems, want 6:\n%v", n, err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		_, err := Load("/nonexistent/kafkaguard.yaml", nil)
		if !errors.Is(err, fs.ErrNotExist) || !contains(err.Error(), "/nonexistent/kafkaguard.yaml") {
			t.Fatalf("error = %v, want not-exist naming the file", err)
		}
	})
	t.Run("syntax error", func(t *testing.T) {
		path := writeFile(t, "listeners:\n  - address: [unclosed\n")
		_, err := Load(path, nil)
		if err == nil || !contains(err.Error(), path) || !contains(err.Error(), "line") {
			t.Fatalf("error = %v, want a YAML error naming %s and the line", err, path)
		}
	})
	t.Run("not a mapping", func(t *testing.T) {
		path := writeFile(t, "- a\n- b\n")
		_, err := Load(path, nil)
		if err == nil || !contains(err.Error(), path) {
			t.Fatalf("error = %v, want one naming %s", err, path)
		}
	})
}

// The abuse prefix lengths and the metrics address are read from the file.
func TestLoadSourcePrefixesAndMetricsAddress(t *testing.T) {
	cfg, err := LoadValid(writeFile(t, `
listeners: [{address: ":9092", upstream: "broker-1:9092"}]
admin: {address: 127.0.0.1:9644, metrics_address: 0.0.0.0:9645}
abuse: {ipv4_prefix: 24, ipv6_prefix: 56}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Abuse.IPv4Prefix != 24 || cfg.Abuse.IPv6Prefix != 56 || cfg.Admin.MetricsAddress != "0.0.0.0:9645" {
		t.Errorf("abuse = %+v, admin = %+v", cfg.Abuse, cfg.Admin)
	}
	if d := Default(); d.Abuse.IPv4Prefix != 32 || d.Abuse.IPv6Prefix != 64 || d.Admin.MetricsAddress != "" {
		t.Errorf("defaults: abuse = %+v, admin = %+v", d.Abuse, d.Admin)
	}
}

// A file that cannot be read or parsed is one ErrFile problem, whatever the
// cause; LoadValid stops there instead of validating the empty config.
func TestLoadValidFileErrors(t *testing.T) {
	for name, path := range map[string]string{
		"missing":   "/nonexistent/kafkaguard.yaml",
		"directory": t.TempDir(),
		"syntax":    writeFile(t, "listeners:\n  - address: [unclosed\n"),
		"not a map": writeFile(t, "- a\n- b\n"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadValid(path, nil)
			if !errors.Is(err, ErrFile) {
				t.Fatalf("error = %v, want ErrFile", err)
			}
			if _, one := err.(*fileError); !one {
				t.Fatalf("error %T, want the one file problem alone: %v", err, err)
			}
		})
	}
}

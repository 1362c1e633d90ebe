package app

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/kafkaguard/kafkaguard/config"
	"github.com/kafkaguard/kafkaguard/limits"
	"github.com/kafkaguard/kafkaguard/proxy"
	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// deployExample is the example config that lists every key.
const deployExample = "../../../deploy/kafkaguard.yaml"

// running is what a built App runs with, read back from its parts.
type running struct {
	app    *App
	opts   proxy.Options       // the proxy server's
	gate   *limits.GateOptions // the gate's; nil without one
	policy *limits.Policy
	pool   *limits.Pool
	log    string // one error line written through the App's logger
}

// check returns, for one key, the value the config holds (in the running
// component's units) and the value the running component has. arg is the
// list index or map key the pattern's [] or * stands for.
type check func(c config.Config, r running, arg string) (want, got any)

func listener(arg string) int { i, _ := strconv.Atoi(arg); return i }

func gateOpt(r running, f func(limits.GateOptions) any) any {
	if r.gate == nil {
		return "no gate"
	}
	return f(*r.gate)
}

// wiring says, for every key of the config, where the running kafkaguard
// holds it. A key in deploy/kafkaguard.yaml without an entry fails
// TestEveryExampleKeyReachesTheServer.
var wiring = map[string]check{
	"listeners[].address": func(c config.Config, r running, a string) (any, any) {
		return c.Listeners[listener(a)].Address, r.opts.Routes[listener(a)].Listen
	},
	"listeners[].upstream": func(c config.Config, r running, a string) (any, any) {
		return c.Listeners[listener(a)].Upstream, r.opts.Routes[listener(a)].Upstream
	},
	"listeners[].advertised": func(c config.Config, r running, a string) (any, any) {
		return c.Listeners[listener(a)].Advertised, r.opts.Routes[listener(a)].Advertised
	},
	"listeners[].node_id": func(c config.Config, r running, a string) (any, any) {
		want := "unset"
		if id := c.Listeners[listener(a)].NodeID; id != nil {
			want = strconv.Itoa(int(*id))
		}
		got := "unset"
		if rt := r.opts.Routes[listener(a)]; rt.HasNodeID {
			got = strconv.Itoa(int(rt.NodeID))
		}
		return want, got
	},
	"listeners[].sasl": func(c config.Config, r running, a string) (any, any) {
		return c.Listeners[listener(a)].SASL == config.SASLRequire, r.opts.Routes[listener(a)].SASLRequire
	},
	// The admin servers and the shutdown drain are the App's own: Start and
	// Stop read them from the config the App keeps.
	"admin.address": func(c config.Config, r running, _ string) (any, any) { return c.Admin.Address, r.app.cfg.Admin.Address },
	"admin.metrics_address": func(c config.Config, r running, _ string) (any, any) {
		return c.Admin.MetricsAddress, r.app.cfg.Admin.MetricsAddress
	},
	"timeouts.shutdown": func(c config.Config, r running, _ string) (any, any) {
		return c.Timeouts.Shutdown, r.app.cfg.Timeouts.Shutdown
	},
	// The token itself is what the guard compares with (guard.go), read from the file at Build.
	"admin.token_file": func(c config.Config, r running, _ string) (any, any) {
		want := ""
		if c.Admin.TokenFile != "" {
			want, _ = config.ReadToken(c.Admin.TokenFile)
		}
		got := ""
		if tok := r.app.token.Load(); tok != nil {
			got = *tok
		}
		return want, got
	},
	"admin.protect_reads": func(c config.Config, r running, _ string) (any, any) {
		return c.Admin.ProtectReads, r.app.config().Admin.ProtectReads
	},

	"limits.max_request_bytes": func(c config.Config, r running, _ string) (any, any) {
		// Fetch has no entry in the example's limits.api.
		return int64(c.APILimit("Fetch")), int64(r.policy.Limit(apiKey("Fetch")))
	},
	"limits.api.*": func(c config.Config, r running, name string) (any, any) {
		return int64(c.Limits.API[name]), int64(r.policy.Limit(apiKey(name)))
	},
	"limits.max_client_id_bytes": func(c config.Config, r running, _ string) (any, any) {
		return c.Limits.MaxClientIDBytes, r.policy.MaxClientIDBytes()
	},
	"limits.max_drain_bytes": func(c config.Config, r running, _ string) (any, any) {
		// 0 means 4 x the Produce limit, as config documents and computes.
		return int64(c.EffectiveMaxDrain()), r.policy.MaxDrainBytes()
	},
	"limits.max_local_answer_bytes": func(c config.Config, r running, _ string) (any, any) {
		return int64(c.Limits.MaxLocalAnswerBytes), int64(r.opts.MaxLocalAnswerBytes)
	},
	"limits.max_unauthenticated_bytes": func(c config.Config, r running, _ string) (any, any) {
		return int64(c.Limits.MaxUnauthenticatedBytes), int64(r.opts.MaxUnauthenticatedBytes)
	},
	"limits.deny_api": func(c config.Config, r running, _ string) (any, any) {
		want := []int16{}
		for _, name := range c.Limits.DenyAPI {
			want = append(want, apiKey(name))
		}
		slices.Sort(want)
		got := []int16{}
		for k := range int16(1024) {
			if r.policy.Denied(k) {
				got = append(got, k)
			}
		}
		return want, got
	},
	"limits.unknown_api": func(c config.Config, r running, _ string) (any, any) {
		return c.Limits.UnknownAPI == config.UnknownAPIForward, r.policy.ForwardsUnknown()
	},

	"timeouts.header": func(c config.Config, r running, _ string) (any, any) { return c.Timeouts.Header, r.opts.HeaderTimeout },
	"timeouts.frame":  func(c config.Config, r running, _ string) (any, any) { return c.Timeouts.Frame, r.opts.FrameTimeout },
	"timeouts.idle":   func(c config.Config, r running, _ string) (any, any) { return c.Timeouts.Idle, r.opts.IdleTimeout },
	"timeouts.dial":   func(c config.Config, r running, _ string) (any, any) { return c.Timeouts.Dial, r.opts.DialTimeout },
	"timeouts.write":  func(c config.Config, r running, _ string) (any, any) { return c.Timeouts.Write, r.opts.WriteTimeout },
	"timeouts.request": func(c config.Config, r running, _ string) (any, any) {
		return c.Timeouts.Request, r.opts.RequestTimeout
	},
	"timeouts.tls_handshake": func(c config.Config, r running, _ string) (any, any) {
		return c.Timeouts.TLSHandshake, r.opts.TLSHandshakeTimeout
	},
	// The TLS sections are checked whole: each of their keys needs the
	// others (files that exist and pair), so they are set together.
	"listeners[].tls": func(c config.Config, r running, a string) (any, any) {
		var want, got any = "plaintext", "plaintext"
		if t := c.Listeners[listener(a)].TLS; t != nil {
			auth := map[string]tls.ClientAuthType{"": tls.NoClientCert, "none": tls.NoClientCert,
				"request": tls.VerifyClientCertIfGiven, "require": tls.RequireAndVerifyClientCert}[t.ClientAuth]
			version := map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}[t.MinVersion]
			want = proxy.ServerTLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile,
				ClientAuth: auth, MinVersion: version}
		}
		if src := r.opts.Routes[listener(a)].TLS; src != nil {
			got = src.Files()
		}
		return want, got
	},
	"listeners[].upstream_tls": func(c config.Config, r running, a string) (any, any) {
		var want, got any = "plaintext", "plaintext"
		l := c.Listeners[listener(a)]
		if u := l.UpstreamTLS; u != nil {
			name := u.ServerName
			if name == "" {
				name, _, _ = net.SplitHostPort(l.Upstream)
			}
			want = proxy.UpstreamTLSFiles{CAFile: u.CAFile, ServerName: name, CertFile: u.CertFile, KeyFile: u.KeyFile}
		}
		if src := r.opts.Routes[listener(a)].UpstreamTLS; src != nil {
			got = src.Files()
		}
		return want, got
	},

	"pool.chunk_bytes": func(c config.Config, r running, _ string) (any, any) {
		return int64(c.Pool.ChunkBytes), int64(r.pool.ChunkBytes())
	},
	"pool.total_bytes": func(c config.Config, r running, _ string) (any, any) {
		return int64(c.Pool.TotalBytes), r.pool.Capacity()
	},
	"pool.wait": func(c config.Config, r running, _ string) (any, any) { return c.Pool.Wait, r.opts.PoolWait },

	"proxy.cut_through_bytes": func(c config.Config, r running, _ string) (any, any) {
		return int64(c.Proxy.CutThroughBytes), int64(r.opts.CutThroughBytes)
	},
	"proxy.cut_through_budget": func(c config.Config, r running, _ string) (any, any) {
		return int64(c.Proxy.CutThroughBudget), r.opts.CutThroughBudget
	},
	"proxy.max_inflight": func(c config.Config, r running, _ string) (any, any) { return c.Proxy.MaxInflight, r.opts.MaxInflight },
	"proxy.max_rewrite_bytes": func(c config.Config, r running, _ string) (any, any) {
		return int64(c.Proxy.MaxRewriteBytes), int64(r.opts.MaxRewriteBytes)
	},
	"rewrite.unmapped_port": func(c config.Config, r running, _ string) (any, any) {
		return c.Rewrite.UnmappedPort, r.opts.UnmappedPort
	},

	"abuse.enabled": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.Enabled, r.gate != nil && r.opts.Gate != nil
	},
	"abuse.offences_before_ban": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.OffencesBeforeBan, gateOpt(r, func(g limits.GateOptions) any { return g.OffencesBeforeBan })
	},
	"abuse.offence_window": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.OffenceWindow, gateOpt(r, func(g limits.GateOptions) any { return g.OffenceWindow })
	},
	"abuse.ban_min": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.BanMin, gateOpt(r, func(g limits.GateOptions) any { return g.BanMin })
	},
	"abuse.ban_max": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.BanMax, gateOpt(r, func(g limits.GateOptions) any { return g.BanMax })
	},
	"abuse.forget_after": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.ForgetAfter, gateOpt(r, func(g limits.GateOptions) any { return g.ForgetAfter })
	},
	"abuse.max_connections_per_ip": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.MaxConnectionsPerIP, gateOpt(r, func(g limits.GateOptions) any { return g.MaxConnsPerIP })
	},
	"abuse.connection_rate_per_ip": func(c config.Config, r running, _ string) (any, any) {
		rate := c.Abuse.ConnectionRatePerIP
		return fmt.Sprintf("%v/s burst %d", rate.PerSecond(), rate.Count),
			gateOpt(r, func(g limits.GateOptions) any { return fmt.Sprintf("%v/s burst %d", g.RatePerSecond, g.RateBurst) })
	},
	"abuse.allow": func(c config.Config, r running, _ string) (any, any) {
		return prefixes(c.Abuse.Allow), gateOpt(r, func(g limits.GateOptions) any { return prefixes(g.Allow) })
	},
	"abuse.max_tracked_sources": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.MaxTrackedSources, gateOpt(r, func(g limits.GateOptions) any { return g.MaxTracked })
	},
	"abuse.weights.closed": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.Weights.Closed, r.opts.Weights.Closed
	},
	"abuse.weights.rejected_produce": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.Weights.RejectedProduce, r.opts.Weights.RejectedProduce
	},
	"abuse.ipv4_prefix": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.IPv4Prefix, gateOpt(r, func(g limits.GateOptions) any { return g.IPv4Prefix })
	},
	"abuse.ipv6_prefix": func(c config.Config, r running, _ string) (any, any) {
		return c.Abuse.IPv6Prefix, gateOpt(r, func(g limits.GateOptions) any { return g.IPv6Prefix })
	},

	"log.level": func(c config.Config, r running, _ string) (any, any) {
		return c.Log.Level, r.app.level.String()
	},
	"log.format": func(c config.Config, r running, _ string) (any, any) {
		got := "console"
		if strings.HasPrefix(r.log, "{") {
			got = "json"
		}
		return c.Log.Format, got
	},
}

// nonDefault is, for every key, a value other than its default and the
// example's, valid on its own in the example file. arg is as for check.
var nonDefault = map[string]func(arg string) any{
	"listeners[].address":    func(a string) any { return fmt.Sprintf("127.0.0.1:%d", 29092+listener(a)) },
	"listeners[].upstream":   func(a string) any { return fmt.Sprintf("127.0.0.2:%d", 39092+listener(a)) },
	"listeners[].advertised": func(a string) any { return fmt.Sprintf("broker-%d.example:9092", listener(a)) },
	"listeners[].node_id":    func(a string) any { return 10 + listener(a) },
	"listeners[].sasl":       func(string) any { return "require" },

	"admin.address":         func(string) any { return "127.0.0.1:19644" },
	"admin.metrics_address": func(string) any { return "0.0.0.0:19645" },
	"admin.token_file":      func(string) any { return "testdata/admin-token" },
	"admin.protect_reads":   func(string) any { return true },

	"limits.max_request_bytes":         func(string) any { return "2MiB" },
	"limits.api.*":                     func(string) any { return "40KiB" },
	"limits.max_client_id_bytes":       func(string) any { return 100 },
	"limits.max_drain_bytes":           func(string) any { return "8MiB" },
	"limits.max_local_answer_bytes":    func(string) any { return "128KiB" },
	"limits.max_unauthenticated_bytes": func(string) any { return "32KiB" },
	"limits.deny_api":                  func(string) any { return []any{"DeleteTopics", "CreateTopics"} },
	"limits.unknown_api":               func(string) any { return "forward" },

	"timeouts.header":        func(string) any { return "11s" },
	"timeouts.frame":         func(string) any { return "31s" },
	"timeouts.idle":          func(string) any { return "11m" },
	"timeouts.dial":          func(string) any { return "6s" },
	"timeouts.write":         func(string) any { return "32s" },
	"timeouts.shutdown":      func(string) any { return "33s" },
	"timeouts.request":       func(string) any { return "12m" },
	"timeouts.tls_handshake": func(string) any { return "7s" },
	"listeners[].tls": func(string) any {
		return map[string]any{"cert_file": wiringCerts.ServerFiles.Cert, "key_file": wiringCerts.ServerFiles.Key,
			"client_ca_file": wiringCerts.CAFile, "client_auth": "require", "min_version": "1.3"}
	},
	"listeners[].upstream_tls": func(string) any {
		return map[string]any{"ca_file": wiringCerts.CAFile, "server_name": "kafka-0.kafka-headless",
			"cert_file": wiringCerts.ClientFiles.Cert, "key_file": wiringCerts.ClientFiles.Key}
	},

	"pool.chunk_bytes": func(string) any { return "16KiB" },
	"pool.total_bytes": func(string) any { return "128MiB" },
	"pool.wait":        func(string) any { return "6s" },

	"proxy.cut_through_bytes":  func(string) any { return "64KiB" },
	"proxy.cut_through_budget": func(string) any { return "32MiB" },
	"proxy.max_inflight":       func(string) any { return 64 },
	"proxy.max_rewrite_bytes":  func(string) any { return "8MiB" },

	"rewrite.unmapped_port": func(string) any { return 9092 },

	"abuse.enabled":                  func(string) any { return false },
	"abuse.offences_before_ban":      func(string) any { return 7 },
	"abuse.offence_window":           func(string) any { return "2m" },
	"abuse.ban_min":                  func(string) any { return "45s" },
	"abuse.ban_max":                  func(string) any { return "2h" },
	"abuse.forget_after":             func(string) any { return "3h" },
	"abuse.max_connections_per_ip":   func(string) any { return 77 },
	"abuse.connection_rate_per_ip":   func(string) any { return "600/m" },
	"abuse.allow":                    func(string) any { return []any{"192.0.2.0/24", "2001:db8::1"} },
	"abuse.max_tracked_sources":      func(string) any { return 1234 },
	"abuse.weights.closed":           func(string) any { return 0 },
	"abuse.weights.rejected_produce": func(string) any { return 0.5 },
	"abuse.ipv4_prefix":              func(string) any { return 24 },
	"abuse.ipv6_prefix":              func(string) any { return 56 },

	"log.level":  func(string) any { return "debug" },
	"log.format": func(string) any { return "console" },
}

// requires are keys that are valid only with another key set: setting the key alone to its non-default
// value sets these too.
var requires = map[string]map[string]any{
	"admin.protect_reads": {"admin.token_file": "testdata/admin-token"},
}

// commentedOut are keys of Config the example shows only in a comment,
// because setting them changes behaviour; they are checked by setting them.
var commentedOut = []string{"listeners[0].node_id", "listeners[0].tls", "listeners[0].upstream_tls"}

// wiringCerts are the files the TLS sections' non-default values name;
// TestEveryExampleKeyReachesTheServer makes them.
var wiringCerts *tlstest.Certs

func apiKey(name string) int16 {
	k, ok := config.APIKey(name)
	if !ok {
		panic("unknown API " + name)
	}
	return k
}

func prefixes(ps []netip.Prefix) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// indexOrName matches a list index ("listeners[2]") or a map key under
// limits.api, which pattern replaces with [] and *.
var indexOrName = regexp.MustCompile(`\[(\d+)\]|^(limits\.api)\.([A-Za-z]+)$`)

// pattern turns a concrete key into its wiring entry and the index or name.
func pattern(key string) (string, string) {
	if m := indexOrName.FindStringSubmatch(key); m != nil {
		if m[1] != "" {
			return strings.Replace(key, m[0], "[]", 1), m[1]
		}
		return m[2] + ".*", m[3]
	}
	return key, ""
}

// leafKeys lists the keys of a parsed YAML document down to its leaves: a
// scalar, a list of scalars, or an empty list or map.
func leafKeys(prefix string, v any) []string {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			return []string{prefix}
		}
		var out []string
		for k, child := range v {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			out = append(out, leafKeys(key, child)...)
		}
		sort.Strings(out)
		return out
	case []any:
		if len(v) > 0 {
			if _, ok := v[0].(map[string]any); ok {
				var out []string
				for i, child := range v {
					out = append(out, leafKeys(fmt.Sprintf("%s[%d]", prefix, i), child)...)
				}
				return out
			}
		}
	}
	return []string{prefix}
}

// setKey sets a dotted key (with [i] list indexes) in a parsed YAML document.
func setKey(t *testing.T, doc map[string]any, key string, value any) {
	t.Helper()
	segs := strings.Split(key, ".")
	var cur any = doc
	for i, seg := range segs {
		name, idx, isList := strings.Cut(seg, "[")
		m := cur.(map[string]any)
		last := i == len(segs)-1
		if isList {
			n, _ := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			cur = m[name].([]any)[n]
			if last {
				t.Fatalf("cannot set a whole list element %s", key)
			}
			continue
		}
		if last {
			m[name] = value
			return
		}
		cur = m[name]
	}
}

// buildFrom loads path as cmd/kafkaguard does, builds the App and reads back
// what its parts run with. Nothing is bound.
func buildFrom(t *testing.T, path string) (config.Config, running) {
	t.Helper()
	cfg, err := config.LoadValid(path, nil)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	var logs bytes.Buffer
	log, level, err := NewLevelLogger(cfg.Log, &logs)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Build(cfg, log)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	a.SetLogLevel(level)
	r := running{app: a, opts: a.Server().Options(), pool: a.Server().Options().Pool}
	r.policy = r.opts.Policy
	if g := a.gate; g != nil {
		o := g.Options()
		r.gate = &o
	}
	l := a.Log()
	l.Error().Msg("wiring")
	r.log = logs.String()
	return cfg, r
}

func readExample(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(deployExample)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// Every key in deploy/kafkaguard.yaml reaches the running kafkaguard
// unchanged: the proxy server, the gate, the pool and the policy run with
// the values the file sets (a key added to the file without wiring fails
// here). Then each key, set alone to a value other than its default, arrives
// too, so a default that happens to equal the lower package's own cannot
// hide a missing wire.
func TestEveryExampleKeyReachesTheServer(t *testing.T) {
	wiringCerts = tlstest.New(t)
	doc := readExample(t)
	keys := leafKeys("", doc)
	if len(keys) < 40 {
		t.Fatalf("only %d keys in %s: %v", len(keys), deployExample, keys)
	}
	cfg, r := buildFrom(t, deployExample)
	for _, key := range keys {
		p, arg := pattern(key)
		ch, ok := wiring[p]
		if !ok {
			t.Errorf("%s: no wiring entry for %s: say where the running kafkaguard holds it", key, p)
			continue
		}
		if want, got := ch(cfg, r, arg); !reflect.DeepEqual(want, got) {
			t.Errorf("%s: config has %v, kafkaguard runs with %v", key, want, got)
		}
	}

	for _, key := range append(keys, commentedOut...) {
		p, arg := pattern(key)
		ch, ok1 := wiring[p]
		val, ok2 := nonDefault[p]
		if !ok1 || !ok2 {
			t.Errorf("%s: no wiring or non-default value for %s", key, p)
			continue
		}
		t.Run(key, func(t *testing.T) {
			doc := readExample(t)
			setKey(t, doc, key, val(arg))
			for k, v := range requires[p] {
				setKey(t, doc, k, v)
			}
			raw, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			c2, r2 := buildFrom(t, path)
			want, got := ch(c2, r2, arg)
			if !reflect.DeepEqual(want, got) {
				t.Errorf("%s = %v: config has %v, kafkaguard runs with %v", key, val(arg), want, got)
			}
			wantFile, _ := ch(cfg, r, arg)
			d := config.Default()
			d.Listeners = cfg.Listeners
			wantDefault, _ := ch(d, r, arg)
			if reflect.DeepEqual(want, wantFile) || reflect.DeepEqual(want, wantDefault) {
				t.Errorf("%s = %v is the example's or the default value (%v): pick another", key, val(arg), want)
			}
		})
	}
}

// section reports whether t is a struct of config keys (not a value such as
// a Rate or a netip.Prefix).
func section(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t.NumField() > 0 && t.Field(0).Tag.Get("koanf") != ""
}

// Every key Config has is in deploy/kafkaguard.yaml (or shown there in a
// comment), so the test above covers it: a key added to config and not to
// the example fails here.
func TestExampleListsEveryConfigKey(t *testing.T) {
	have := map[string]bool{}
	for _, key := range append(leafKeys("", readExample(t)), commentedOut...) {
		p, _ := pattern(key)
		have[p] = true
	}
	var walk func(prefix string, ty reflect.Type)
	walk = func(prefix string, ty reflect.Type) {
		for i := range ty.NumField() {
			f := ty.Field(i)
			key := f.Tag.Get("koanf")
			if prefix != "" {
				key = prefix + "." + key
			}
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Slice && section(ft.Elem()):
				walk(key+"[]", ft.Elem())
			case section(ft):
				walk(key, ft)
			case ft.Kind() == reflect.Map:
				if !have[key+".*"] && !have[key] {
					t.Errorf("%s: not in %s", key, deployExample)
				}
			default:
				if !have[key] {
					t.Errorf("%s: not in %s", key, deployExample)
				}
			}
		}
	}
	walk("", reflect.TypeFor[config.Config]())
}

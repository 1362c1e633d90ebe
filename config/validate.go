package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Bounds Validate enforces.
const (
	// minRequestLimit is the smallest useful request limit: a v1 request header
	// with an empty client id is 10 bytes, and a little room is left for a body.
	minRequestLimit = 16 * Byte
	// maxRequestLimit is the largest request limit; Kafka's own default socket
	// cap is 100MiB, and a proxy storing frames whole needs a sane ceiling.
	maxRequestLimit = GiB
	// maxClientIDBytes is the largest client id the int16 length can carry.
	maxClientIDBytes = math.MaxInt16
	minChunk         = KiB
	maxChunk         = 16 * MiB
	maxInflight      = 65536
	// minIPv4Prefix and minIPv6Prefix bound how wide one abuse source may be: wider, and one offender's
	// ban would shut out a whole provider's customers.
	minIPv4Prefix = 8
	minIPv6Prefix = 16
)

// problems collects KeyErrors in the order found.
type problems []error

func (p *problems) add(key string, err error) { *p = append(*p, &KeyError{Key: key, Err: err}) }

func (p *problems) addf(key, format string, args ...any) {
	p.add(key, invalidf(fmt.Sprintf(format, args...)))
}

// Validate checks every setting and returns all problems found, joined with
// errors.Join, each a *KeyError naming its key, e.g.
// "listeners[1].address: duplicate of listeners[0]". It returns nil for a
// usable config.
func (c Config) Validate() error {
	var p problems
	c.validateListeners(&p)
	for i, l := range c.Listeners {
		l.validateTLS(&p, fmt.Sprintf("listeners[%d]", i), time.Now())
	}
	c.validateLimits(&p)
	c.validateTimeouts(&p)
	c.validatePool(&p)
	c.validateProxy(&p)
	if port := c.Rewrite.UnmappedPort; port < 0 || port > 65535 {
		p.addf("rewrite.unmapped_port", "must be 0 (leave unmapped brokers unchanged) or a port 1..65535, got %d", port)
	}
	c.validateAbuse(&p)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		p.addf("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		p.addf("log.format", "must be json or console, got %q", c.Log.Format)
	}
	return errors.Join(p...)
}

// hostPort is a parsed host:port; wildcard means it binds every address.
type hostPort struct {
	host     string
	port     int
	wildcard bool
}

// parseHostPort checks s is host:port with a numeric port in [minPort, 65535].
// An empty host is allowed only where listening (allowEmptyHost).
func parseHostPort(s string, minPort int, allowEmptyHost bool) (hostPort, error) {
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		return hostPort{}, invalidf(fmt.Sprintf("%q is not host:port", s))
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < minPort || port > 65535 {
		return hostPort{}, invalidf(fmt.Sprintf("%q: port must be a number %d..65535", s, minPort))
	}
	if host == "" && !allowEmptyHost {
		return hostPort{}, invalidf(fmt.Sprintf("%q: host is missing", s))
	}
	host = strings.ToLower(host)
	return hostPort{host: host, port: port, wildcard: host == "" || host == "0.0.0.0" || host == "::"}, nil
}

// overlaps reports whether two listen addresses would fight over one port.
// Port 0 asks the system for a free port, so it never collides.
func (a hostPort) overlaps(b hostPort) bool {
	return a.port != 0 && a.port == b.port && (a.host == b.host || a.wildcard || b.wildcard)
}

func (c Config) validateListeners(p *problems) {
	if len(c.Listeners) == 0 {
		p.add("listeners", invalidf("at least one listener is required"))
		return
	}
	addrs := make([]hostPort, len(c.Listeners))
	valid := make([]bool, len(c.Listeners))
	upstreams := map[string]int{}
	advertised := map[string]int{}
	nodeIDs := map[int32]int{}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listeners[%d]", i)
		if l.Address == "" {
			p.addf(key+".address", "required: the host:port clients connect to, e.g. 0.0.0.0:9092")
		} else if hp, err := parseHostPort(l.Address, 0, true); err != nil {
			p.add(key+".address", err)
		} else {
			addrs[i], valid[i] = hp, true
			for j := range i {
				if valid[j] && addrs[j].overlaps(hp) {
					if addrs[j] == hp {
						p.addf(key+".address", "duplicate of listeners[%d]", j)
					} else {
						p.addf(key+".address", "overlaps listeners[%d] (%s): same port, and a wildcard host binds every address", j, c.Listeners[j].Address)
					}
					break
				}
			}
		}
		if l.Upstream == "" {
			p.addf(key+".upstream", "required: the host:port of the broker behind this listener")
		} else if hp, err := parseHostPort(l.Upstream, 1, false); err != nil {
			p.add(key+".upstream", err)
		} else {
			norm := net.JoinHostPort(hp.host, strconv.Itoa(hp.port))
			if j, dup := upstreams[norm]; dup {
				p.addf(key+".upstream", "duplicate of listeners[%d]", j)
			} else {
				upstreams[norm] = i
			}
		}
		if l.Advertised != "" {
			if hp, err := parseHostPort(l.Advertised, 1, false); err != nil {
				p.add(key+".advertised", err)
			} else {
				norm := net.JoinHostPort(hp.host, strconv.Itoa(hp.port))
				if j, dup := advertised[norm]; dup {
					p.addf(key+".advertised", "duplicate of listeners[%d]", j)
				} else {
					advertised[norm] = i
				}
			}
		}
		if l.NodeID != nil {
			if *l.NodeID < 0 {
				p.addf(key+".node_id", "must not be negative, got %d", *l.NodeID)
			} else if j, dup := nodeIDs[*l.NodeID]; dup {
				p.addf(key+".node_id", "duplicate of listeners[%d]", j)
			} else {
				nodeIDs[*l.NodeID] = i
			}
		}
	}
	var admin hostPort
	adminValid := false
	if c.Admin.Address != "" {
		if hp, err := parseHostPort(c.Admin.Address, 0, true); err != nil {
			p.add("admin.address", err)
		} else {
			admin, adminValid = hp, true
			for i := range addrs {
				if valid[i] && addrs[i].overlaps(hp) {
					p.addf("admin.address", "collides with listeners[%d].address (%s)", i, c.Listeners[i].Address)
					break
				}
			}
		}
	}
	if c.Admin.TokenFile != "" {
		if _, err := ReadToken(c.Admin.TokenFile); err != nil {
			p.add("admin.token_file", err)
		}
	} else if c.Admin.ProtectReads {
		p.addf("admin.protect_reads", "needs admin.token_file: without a token there is nothing to protect reads with")
	}
	if c.Admin.MetricsAddress != "" {
		if hp, err := parseHostPort(c.Admin.MetricsAddress, 0, true); err != nil {
			p.add("admin.metrics_address", err)
		} else if adminValid && admin.overlaps(hp) {
			p.addf("admin.metrics_address", "collides with admin.address (%s)", c.Admin.Address)
		} else {
			for i := range addrs {
				if valid[i] && addrs[i].overlaps(hp) {
					p.addf("admin.metrics_address", "collides with listeners[%d].address (%s)", i, c.Listeners[i].Address)
					break
				}
			}
		}
	}
}

// checkRequestLimit reports a request limit outside [16B, 1GiB].
func checkRequestLimit(p *problems, key string, s Size) {
	if s < minRequestLimit || s > maxRequestLimit {
		p.addf(key, "must be between %s and %s, got %s", minRequestLimit, maxRequestLimit, s)
	}
}

func (c Config) validateLimits(p *problems) {
	l := c.Limits
	checkRequestLimit(p, "limits.max_request_bytes", l.MaxRequestBytes)
	names := make([]string, 0, len(l.API))
	for name := range l.API {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := "limits.api." + name
		if _, ok := APIKey(name); !ok {
			p.add(key, unknownAPI(name))
			continue
		}
		checkRequestLimit(p, key, l.API[name])
	}
	if l.MaxClientIDBytes < 0 || l.MaxClientIDBytes > maxClientIDBytes {
		p.addf("limits.max_client_id_bytes", "must be between 0 and %d, got %d", maxClientIDBytes, l.MaxClientIDBytes)
	}
	if l.MaxLocalAnswerBytes < KiB || l.MaxLocalAnswerBytes > 16*MiB {
		p.addf("limits.max_local_answer_bytes", "must be between %s and %s, got %s", Size(KiB), Size(16*MiB), l.MaxLocalAnswerBytes)
	}
	if l.MaxUnauthenticatedBytes < KiB || l.MaxUnauthenticatedBytes > 16*MiB {
		p.addf("limits.max_unauthenticated_bytes", "must be between %s and %s, got %s", Size(KiB), Size(16*MiB), l.MaxUnauthenticatedBytes)
	}
	if l.MaxDrainBytes < 0 {
		p.addf("limits.max_drain_bytes", "must not be negative (0 means 4 x the Produce limit), got %s", l.MaxDrainBytes)
	}
	for i, name := range l.DenyAPI {
		if _, ok := APIKey(name); !ok {
			p.add(fmt.Sprintf("limits.deny_api[%d]", i), unknownAPI(name))
		}
	}
	if l.UnknownAPI != UnknownAPIClose && l.UnknownAPI != UnknownAPIForward {
		p.addf("limits.unknown_api", "must be close or forward, got %q", l.UnknownAPI)
	}
}

func (c Config) validateTimeouts(p *problems) {
	for _, t := range []struct {
		key string
		d   time.Duration
	}{
		{"timeouts.header", c.Timeouts.Header},
		{"timeouts.frame", c.Timeouts.Frame},
		{"timeouts.idle", c.Timeouts.Idle},
		{"timeouts.dial", c.Timeouts.Dial},
		{"timeouts.write", c.Timeouts.Write},
		{"timeouts.shutdown", c.Timeouts.Shutdown},
		{"timeouts.request", c.Timeouts.Request},
		{"timeouts.tls_handshake", c.Timeouts.TLSHandshake},
	} {
		if t.d <= 0 {
			p.addf(t.key, "must be positive, got %s", t.d)
		}
	}
}

// largestLimit returns the largest request limit and the key that sets it.
func (c Config) largestLimit() (Size, string) {
	largest, key := c.Limits.MaxRequestBytes, "limits.max_request_bytes"
	names := make([]string, 0, len(c.Limits.API))
	for name := range c.Limits.API {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if s := c.Limits.API[name]; s > largest {
			largest, key = s, "limits.api."+name
		}
	}
	return largest, key
}

func (c Config) validatePool(p *problems) {
	pool := c.Pool
	chunkOK := pool.ChunkBytes >= minChunk && pool.ChunkBytes <= maxChunk
	if !chunkOK {
		p.addf("pool.chunk_bytes", "must be between %s and %s, got %s", minChunk, maxChunk, pool.ChunkBytes)
	}
	if chunkOK && pool.TotalBytes < pool.ChunkBytes {
		p.addf("pool.total_bytes", "must be at least pool.chunk_bytes (%s), got %s", pool.ChunkBytes, pool.TotalBytes)
	} else if largest, key := c.largestLimit(); pool.TotalBytes < largest {
		p.addf("pool.total_bytes", "must be at least %s (%s) so one whole frame can be stored, got %s", key, largest, pool.TotalBytes)
	}
	if pool.Wait <= 0 {
		p.addf("pool.wait", "must be positive, got %s", pool.Wait)
	}
}

func (c Config) validateProxy(p *problems) {
	px := c.Proxy
	if px.CutThroughBytes < 0 || (px.CutThroughBytes > 0 && px.CutThroughBytes < c.Pool.ChunkBytes) {
		p.addf("proxy.cut_through_bytes", "must be 0 (store and forward every frame) or at least pool.chunk_bytes (%s), got %s", c.Pool.ChunkBytes, px.CutThroughBytes)
	}
	if px.CutThroughBudget <= 0 {
		p.addf("proxy.cut_through_budget", "must be positive, got %s", px.CutThroughBudget)
	} else if px.CutThroughBytes > 0 && px.CutThroughBudget <= px.CutThroughBytes+4 {
		p.addf("proxy.cut_through_budget", "must be larger than proxy.cut_through_bytes + 4 (%s), else no frame is ever cut through, got %s",
			px.CutThroughBytes+4, px.CutThroughBudget)
	}
	if px.MaxInflight < 1 || px.MaxInflight > maxInflight {
		p.addf("proxy.max_inflight", "must be between 1 and %d, got %d", maxInflight, px.MaxInflight)
	}
	checkRequestLimit(p, "proxy.max_rewrite_bytes", px.MaxRewriteBytes)
}

func (c Config) validateAbuse(p *problems) {
	a := c.Abuse
	if !(a.OffencesBeforeBan > 0) || math.IsInf(a.OffencesBeforeBan, 0) {
		p.addf("abuse.offences_before_ban", "must be a positive number, got %v", a.OffencesBeforeBan)
	}
	if a.OffenceWindow <= 0 {
		p.addf("abuse.offence_window", "must be positive, got %s", a.OffenceWindow)
	}
	if a.BanMin <= 0 {
		p.addf("abuse.ban_min", "must be positive, got %s", a.BanMin)
	}
	if a.BanMax <= 0 {
		p.addf("abuse.ban_max", "must be positive, got %s", a.BanMax)
	} else if a.BanMin > a.BanMax {
		p.addf("abuse.ban_max", "must be at least abuse.ban_min (%s), got %s", a.BanMin, a.BanMax)
	}
	if a.ForgetAfter <= 0 {
		p.addf("abuse.forget_after", "must be positive, got %s", a.ForgetAfter)
	}
	if a.MaxConnectionsPerIP < 0 {
		p.addf("abuse.max_connections_per_ip", "must not be negative (0 means no cap), got %d", a.MaxConnectionsPerIP)
	}
	if r := a.ConnectionRatePerIP; r.Count < 0 || r.Count > maxRateCount || r.Per < 0 || (r.Count > 0 && r.Per == 0) {
		p.addf("abuse.connection_rate_per_ip", "must be a positive count per positive interval, or unlimited; got {Count:%d Per:%s}", r.Count, r.Per)
	}
	for i, pfx := range a.Allow {
		if !pfx.IsValid() {
			p.addf(fmt.Sprintf("abuse.allow[%d]", i), "invalid CIDR")
		}
	}
	if a.MaxTrackedSources < 1 {
		p.addf("abuse.max_tracked_sources", "must be at least 1, got %d", a.MaxTrackedSources)
	}
	if a.IPv4Prefix < minIPv4Prefix || a.IPv4Prefix > 32 {
		p.addf("abuse.ipv4_prefix", "must be %d..32 (32 judges each address alone), got %d", minIPv4Prefix, a.IPv4Prefix)
	}
	if a.IPv6Prefix < minIPv6Prefix || a.IPv6Prefix > 128 {
		p.addf("abuse.ipv6_prefix", "must be %d..128 (64 is one host's or one LAN's network), got %d", minIPv6Prefix, a.IPv6Prefix)
	}
	for _, w := range []struct {
		key string
		v   float64
	}{
		{"abuse.weights.closed", a.Weights.Closed},
		{"abuse.weights.rejected_produce", a.Weights.RejectedProduce},
	} {
		if !(w.v >= 0) || math.IsInf(w.v, 0) {
			p.addf(w.key, "must be a number >= 0, got %v", w.v)
		}
	}
}

package app

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kafkaguard/kafkaguard/config"
	"github.com/kafkaguard/kafkaguard/limits"
	"github.com/kafkaguard/kafkaguard/proxy"
)

// The admin HTTP server sits here, beside the wiring, rather than in proxy: it reads the pool, the gate
// and the server through their small read methods and owns no data-plane state.

// adminHandler serves the admin endpoints, meant for the admin address only:
//
//	GET    /metrics      Prometheus metrics from gatherer
//	GET    /healthz      200 while the process runs
//	GET    /readyz       200 when every upstream accepts a connection, else 503 naming the failures
//	GET    /bans                 active bans as JSON (404 when no gate is configured); "addr" is the
//	                             banned source: a bare address for a /32 or /128, else a prefix
//	DELETE /bans/{ip-or-prefix}  lift the ban of the source holding an address (2001:db8::7), or of
//	                             a prefix (2001:db8::/64) no wider than the sources are judged by
//	POST   /bans                 ban a source now: JSON {"source": ip-or-prefix, "duration": "10m",
//	                             "reason": "..."} (at most 4 KiB); 201 with the ban as GET /bans lists it
//	GET    /config               the config in force as JSON (App.adminHandler adds it; see configHandler)
//	GET    /debug/pprof/...      Go's profiles (net/http/pprof), for an operator or kafkaguard-bench
//	POST   /debug/free-os-memory collect garbage and return freed memory to the OS, so RSS read
//	                             afterwards is what is still held (the bench's per-connection figure)
//
// g is nil when abuse.enabled is false. Which of these need the admin token is the guard's business
// (guard.go), decided before this mux.
func adminHandler(s *proxy.Server, g *limits.Gate, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /bans", func(w http.ResponseWriter, _ *http.Request) {
		if g == nil {
			http.Error(w, "abuse gate disabled", http.StatusNotFound)
			return
		}
		out := []BanJSON{}
		for _, b := range g.Bans() {
			out = append(out, banOf(b))
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	// A prefix has a slash, so the wildcard takes the rest of the path.
	mux.HandleFunc("DELETE /bans/{src...}", func(w http.ResponseWriter, r *http.Request) {
		if g == nil {
			http.Error(w, "abuse gate disabled", http.StatusNotFound)
			return
		}
		src, err := banTarget(g, r.PathValue("src"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		name := limits.SourceString(src)
		if !g.Unban(src.Addr()) {
			http.Error(w, "no active ban for "+name, http.StatusNotFound)
			return
		}
		w.Write([]byte("unbanned " + name + "\n"))
	})
	mux.HandleFunc("POST /bans", func(w http.ResponseWriter, r *http.Request) {
		if g == nil {
			http.Error(w, "abuse gate disabled", http.StatusNotFound)
			return
		}
		addBan(g, w, r)
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("POST /debug/free-os-memory", func(w http.ResponseWriter, _ *http.Request) {
		debug.FreeOSMemory()
		w.Write([]byte("ok\n"))
	})
	return mux
}

// maxBanBody bounds a POST /bans body; the three fields fit in a few hundred bytes.
const maxBanBody = 4 << 10

// maxBanReason bounds the reason kept with an operator's ban (GET /bans and the status page show it).
const maxBanReason = 200

// maxManualBan is the longest ban POST /bans sets: a month. Longer is a firewall rule's job.
const maxManualBan = 30 * 24 * time.Hour

// addBan serves POST /bans: an operator bans a source for a while, with a reason, in an incident.
func addBan(g *limits.Gate, w http.ResponseWriter, r *http.Request) {
	var req struct {
		Source   string `json:"source"`
		Duration string `json:"duration"`
		Reason   string `json:"reason"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBanBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "bad request body: want JSON {\"source\": \"192.0.2.7\", \"duration\": \"10m\", \"reason\": \"...\"} of at most 4 KiB: "+err.Error(),
			http.StatusBadRequest)
		return
	}
	src, err := banTarget(g, req.Source)
	if err != nil {
		http.Error(w, "source: "+err.Error(), http.StatusBadRequest)
		return
	}
	d, err := time.ParseDuration(req.Duration)
	if err != nil || d < time.Second || d > maxManualBan {
		http.Error(w, fmt.Sprintf("duration %q: want a Go duration from 1s to %v, such as 10m or 2h", req.Duration, maxManualBan),
			http.StatusBadRequest)
		return
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = "manual"
	}
	if len(reason) > maxBanReason || strings.ContainsFunc(reason, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		http.Error(w, fmt.Sprintf("reason: at most %d bytes on one line", maxBanReason), http.StatusBadRequest)
		return
	}
	b, err := g.AddBan(src.Addr(), d, reason)
	if err != nil {
		http.Error(w, "source "+limits.SourceString(src)+": "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(banOf(b))
}

// BanJSON is one ban as GET /bans lists it and POST /bans answers it; the CLI's `bans` command reads
// the same type, so server and client cannot drift apart.
type BanJSON struct {
	Addr     string    `json:"addr"`
	ClientID string    `json:"client_id,omitempty"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Count    int       `json:"count"`

	// Principal is the SASL user of the offence that earned the ban, if it had logged in.
	Principal string `json:"principal,omitempty"`
}

// banOf is b as the admin API shows it.
func banOf(b limits.Ban) BanJSON {
	return BanJSON{limits.SourceString(b.Source), b.ClientID, b.Reason, b.Since, b.Until, b.Count, b.Principal}
}

// configHandler serves GET /config: the config in force (after every reload, with the keys that could
// not change live at their running values) as JSON keyed as in the file. Files are named by path; the
// admin token and key files' contents are never in a Config, so nothing needs redacting.
func configHandler(cfg func() config.Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(cfg().Map())
	})
}

// metricsHandler serves the read-only admin endpoints, /metrics, /healthz and /readyz, and nothing that
// changes state or costs much: it is what admin.metrics_address exposes beyond loopback, for Prometheus
// and probes.
func metricsHandler(s *proxy.Server, g *limits.Gate, gatherer prometheus.Gatherer) http.Handler {
	admin := adminHandler(s, g, gatherer)
	mux := http.NewServeMux()
	for _, path := range []string{"GET /metrics", "GET /healthz", "GET /readyz"} {
		mux.Handle(path, admin)
	}
	return mux
}

// banTarget reads the source DELETE /bans/ names: an address means the source that holds it; a prefix
// must lie within one source, since lifting the bans of a wider network by one call is not what an
// operator who typed it from /bans meant.
func banTarget(g *limits.Gate, text string) (netip.Prefix, error) {
	if !strings.Contains(text, "/") {
		ip, err := netip.ParseAddr(text)
		if err != nil || ip.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("bad address %q: want an IP such as 192.0.2.7 or a prefix such as 2001:db8::/64", text)
		}
		return g.Source(ip), nil
	}
	p, err := netip.ParsePrefix(text)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: want an IP such as 192.0.2.7 or a prefix such as 2001:db8::/64", text)
	}
	src := g.Source(p.Addr())
	if bits := p.Bits(); p.Addr().Is4In6() && bits >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), bits-96)
	}
	if p.Bits() < src.Bits() {
		return netip.Prefix{}, fmt.Errorf("prefix %s is wider than the /%d sources are judged by; unban each source listed in GET /bans", p, src.Bits())
	}
	return src, nil
}

// registerPoolGauges exports the pool's state for /metrics: what is held now, the most ever held at
// once (kafkaguard-bench reads each attack's peak from it) and the budget.
func registerPoolGauges(reg prometheus.Registerer, pool *limits.Pool) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafkaguard_pool_bytes_in_use",
			Help: "Bytes of pooled chunks held by connections now."}, func() float64 { return float64(pool.InUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafkaguard_pool_bytes_high_water",
			Help: "Most pooled bytes ever held at once."}, func() float64 { return float64(pool.HighWater()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafkaguard_pool_bytes_capacity",
			Help: "The pool's memory budget (pool.total_bytes)."}, func() float64 { return float64(pool.Capacity()) }),
	)
}

// evictedHelp describes kafkaguard_abuse_sources_evicted_total, one help for both states.
const evictedHelp = "Sources forgotten to make room in a full source table (abuse.max_tracked_sources) " +
	"while they had connections open (state connected) or a ban in force (state banned)."

// registerGateGauges exports the abuse gate's state for /metrics.
func registerGateGauges(reg prometheus.Registerer, gate *limits.Gate) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafkaguard_bans_active",
			Help: "Source addresses banned now."}, func() float64 { return float64(gate.ActiveBans()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafkaguard_abuse_tracked_sources",
			Help: "Sources (addresses or prefixes) the abuse tracker remembers (bounded by abuse.max_tracked_sources)."},
			func() float64 { return float64(gate.Tracked()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kafkaguard_abuse_sources_evicted_total",
			Help:        evictedHelp,
			ConstLabels: prometheus.Labels{"state": "connected"}},
			func() float64 { c, _ := gate.EvictedPinned(); return float64(c) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kafkaguard_abuse_sources_evicted_total",
			Help:        evictedHelp,
			ConstLabels: prometheus.Labels{"state": "banned"}},
			func() float64 { _, b := gate.EvictedPinned(); return float64(b) }),
	)
}

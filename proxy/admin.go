package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kafkaguard/kafkaguard/limits"
)

// AdminHandler serves the admin endpoints, meant for the admin address only:
//
//	GET    /metrics      Prometheus metrics from gatherer
//	GET    /healthz      200 while the process runs
//	GET    /readyz       200 when every upstream accepts a connection, else 503 naming the failures
//	GET    /bans                 active bans as JSON (404 when no gate is configured); "addr" is the
//	                             banned source: a bare address for a /32 or /128, else a prefix
//	DELETE /bans/{ip-or-prefix}  lift the ban of the source holding an address (2001:db8::7), or of
//	                             a prefix (2001:db8::/64) no wider than the sources are judged by
func AdminHandler(s *Server, gatherer prometheus.Gatherer) http.Handler {
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
		g := s.Gate()
		if g == nil {
			http.Error(w, "abuse gate disabled", http.StatusNotFound)
			return
		}
		type ban struct {
			Addr     string    `json:"addr"`
			ClientID string    `json:"client_id,omitempty"`
			Reason   string    `json:"reason"`
			Since    time.Time `json:"since"`
			Until    time.Time `json:"until"`
			Count    int       `json:"count"`
		}
		out := []ban{}
		for _, b := range g.Bans() {
			out = append(out, ban{limits.SourceString(b.Source), b.ClientID, b.Reason, b.Since, b.Until, b.Count})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	// A prefix has a slash, so the wildcard takes the rest of the path.
	mux.HandleFunc("DELETE /bans/{src...}", func(w http.ResponseWriter, r *http.Request) {
		g := s.Gate()
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
	return mux
}

// MetricsHandler serves the read-only admin endpoints, /metrics, /healthz and /readyz, and nothing that
// changes state: it is what admin.metrics_address exposes beyond loopback, for Prometheus and probes.
func MetricsHandler(s *Server, gatherer prometheus.Gatherer) http.Handler {
	admin := AdminHandler(s, gatherer)
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

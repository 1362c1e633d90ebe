package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the admin endpoints, meant for the admin address only:
//
//	GET    /metrics      Prometheus metrics from gatherer
//	GET    /healthz      200 while the process runs
//	GET    /readyz       200 when every upstream accepts a connection, else 503 naming the failures
//	GET    /bans         active bans as JSON (404 when no gate is configured)
//	DELETE /bans/{ip}    lift a ban
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
			out = append(out, ban{b.Addr.String(), b.ClientID, b.Reason, b.Since, b.Until, b.Count})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("DELETE /bans/{ip}", func(w http.ResponseWriter, r *http.Request) {
		g := s.Gate()
		if g == nil {
			http.Error(w, "abuse gate disabled", http.StatusNotFound)
			return
		}
		ip, err := netip.ParseAddr(r.PathValue("ip"))
		if err != nil {
			http.Error(w, "bad address: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !g.Unban(ip.Unmap()) {
			http.Error(w, "no active ban for "+ip.String(), http.StatusNotFound)
			return
		}
		w.Write([]byte("unbanned " + ip.String() + "\n"))
	})
	return mux
}

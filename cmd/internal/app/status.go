package app

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kafkaguard/kafkaguard/limits"
)

// statusTopBans is how many bans the status page lists; it says how many more there are.
const statusTopBans = 100

// statusProbeTimeout bounds the upstream dials of one page view.
const statusProbeTimeout = 2 * time.Second

// StatusOptions is what the status page reads. Every field but Gatherer may be nil.
type StatusOptions struct {
	// Gatherer is the registry the page reads pool, connection and refusal figures from.
	Gatherer prometheus.Gatherer
	// History is the refusal history the chart draws; nil draws none.
	History *history
	// TopBans returns the first n bans in force by cmp and how many are in force (limits.Gate.TopBans);
	// nil means the abuse gate is off.
	TopBans func(n int, cmp func(a, b limits.Ban) int) ([]limits.Ban, int)
	// Tracked returns how many sources the gate remembers.
	Tracked func() int
	// Upstreams dials every upstream once (bounded by ctx) and says what answered.
	Upstreams func(ctx context.Context) []upstreamState
	// LastReload returns when the config was last reloaded; the zero time reads "never".
	LastReload func() time.Time
	// CanLift reports whether the request may lift bans, so the page shows lift buttons and POST /lift
	// acts. Nil means never. Today the admin address allows DELETE /bans to whoever reaches it; when
	// admin.token_file exists, this is where its check goes.
	CanLift func(*http.Request) bool
	// LiftNeedsToken reports whether admin.token_file is set, so the page says how to lift bans
	// instead of showing buttons. Nil means no.
	LiftNeedsToken func() bool
	// Unban is the handler of DELETE /bans/{src}: POST /lift hands it the form's source, so a lift from
	// the page takes the same path, checks and log lines as one from the API.
	Unban http.Handler
	// Version and Started head the page.
	Version string
	Started time.Time
}

//go:embed status.html
var statusHTML string

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":  humanBytes,
	"ago":    func(t, now time.Time) string { return roundDur(now.Sub(t)) },
	"in":     func(t, now time.Time) string { return roundDur(t.Sub(now)) },
	"ms":     func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
	"pct":    func(a, b float64) string { return fmt.Sprintf("%.0f%%", 100*a/max(b, 1)) },
	"num":    func(f float64) string { return fmt.Sprintf("%.0f", f) },
	"sub":    func(a, b int) int { return a - b },
	"source": limits.SourceString,
}).Parse(statusHTML))

// StatusHandler serves the status page at GET / and the lift form at POST /lift. POST /lift accepts
// only same-origin requests (http.CrossOriginProtection), so a page elsewhere in the operator's browser
// cannot lift bans through it.
func StatusHandler(o StatusOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", o.page)
	mux.Handle("POST /lift", http.NewCrossOriginProtection().Handler(http.HandlerFunc(o.lift)))
	return mux
}

// statusView is the page's data; the template escapes every string in it.
type statusView struct {
	Version    string
	Now        time.Time
	Started    time.Time
	LastReload time.Time

	ConnsActive, ConnsTotal                 float64
	PoolInUse, PoolCap, PoolHigh, PoolWaits float64
	DialErrors, BansTotal, RefusedTotal     float64
	Reasons                                 []reasonRow // every reason refused since start
	PoolHot                                 bool        // 90% or more of the pool in use
	UpstreamsUp                             int
	Chart                                   chart
	GateOn, CanLift, LiftNeedsToken         bool
	Bans                                    []limits.Ban
	BansActive, BansMore, Tracked           int
	Upstreams                               []upstreamState
	UpstreamsDown                           int
	Lifted, LiftError                       string
}

func (o StatusOptions) page(w http.ResponseWriter, r *http.Request) {
	v := statusView{Version: o.Version, Now: time.Now(), Started: o.Started}
	if o.LastReload != nil {
		v.LastReload = o.LastReload()
	}
	v.CanLift = o.CanLift != nil && o.CanLift(r)
	v.LiftNeedsToken = o.LiftNeedsToken != nil && o.LiftNeedsToken()
	// The flash after a lift: shown only when it names an address or prefix, so a link cannot put
	// words of its own on the page.
	if s := r.URL.Query().Get("lifted"); validSource(s) {
		v.Lifted = s
	}
	if s := r.URL.Query().Get("notlifted"); validSource(s) {
		v.LiftError = s
	}
	mfs, _ := o.Gatherer.Gather() // a partial gather still has what it could read
	v.ConnsActive = metricSum(mfs, "kafkaguard_connections_active")
	v.ConnsTotal = metricSum(mfs, "kafkaguard_connections_total")
	v.PoolInUse = metricSum(mfs, "kafkaguard_pool_bytes_in_use")
	v.PoolCap = metricSum(mfs, "kafkaguard_pool_bytes_capacity")
	v.PoolHigh = metricSum(mfs, "kafkaguard_pool_bytes_high_water")
	v.PoolWaits = metricSum(mfs, "kafkaguard_pool_wait_seconds")
	v.DialErrors = metricSum(mfs, "kafkaguard_upstream_dial_errors_total")
	v.BansTotal = metricSum(mfs, "kafkaguard_bans_total")
	v.RefusedTotal = metricSum(mfs, "kafkaguard_connections_refused_total")
	v.PoolHot = v.PoolCap > 0 && v.PoolInUse >= 0.9*v.PoolCap
	if o.History != nil {
		v.Chart = drawChart(o.History.window())
	}
	v.Reasons = reasonRows(byReason(mfs), v.Chart.Legend)
	if o.TopBans != nil {
		v.GateOn = true
		v.Bans, v.BansActive = o.TopBans(statusTopBans, banRank)
		v.BansMore = v.BansActive - len(v.Bans)
	}
	if o.Tracked != nil {
		v.Tracked = o.Tracked()
	}
	if o.Upstreams != nil {
		ctx, cancel := context.WithTimeout(r.Context(), statusProbeTimeout)
		v.Upstreams = o.Upstreams(ctx)
		cancel()
		for _, u := range v.Upstreams {
			if u.Err != nil {
				v.UpstreamsDown++
			} else {
				v.UpstreamsUp++
			}
		}
	}
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, v); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing on the page loads from anywhere: no script, no image, no style sheet but its own.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.Write(buf.Bytes())
}

// banRank puts first the sources an operator asks about first: the most repeated, then the longest to
// run.
func banRank(a, b limits.Ban) int {
	return cmp.Or(b.Count-a.Count, b.Until.Compare(a.Until), a.Source.Addr().Compare(b.Source.Addr()),
		a.Source.Bits()-b.Source.Bits())
}

// lift hands the form's source to the DELETE /bans/{src} handler and sends the browser back to the
// page, which says what happened.
func (o StatusOptions) lift(w http.ResponseWriter, r *http.Request) {
	if o.CanLift == nil || !o.CanLift(r) || o.Unban == nil {
		http.Error(w, "lifting bans is not allowed here", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1024)
	src := r.PostFormValue("source")
	if !validSource(src) {
		http.Error(w, "bad source: want an address or a prefix", http.StatusBadRequest)
		return
	}
	req := r.Clone(r.Context())
	req.Method = http.MethodDelete
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = "/bans/"+src, "", ""
	req.Body, req.ContentLength = http.NoBody, 0
	rec := &statusRecorder{header: http.Header{}}
	o.Unban.ServeHTTP(rec, req)
	q := "lifted="
	if rec.code != 0 && rec.code != http.StatusOK {
		q = "notlifted="
	}
	http.Redirect(w, r, "/?"+q+url.QueryEscape(src), http.StatusSeeOther)
}

// statusRecorder keeps the status code of the unban handler's answer and drops its body.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}

// validSource reports whether s is an address or a prefix, the only text a lift carries.
func validSource(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// metricSum is the sum over a metric's series (a histogram counts its observations).
func metricSum(mfs []*dto.MetricFamily, name string) float64 {
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// byReason totals the refusal counters by reason since start, largest first.
func byReason(mfs []*dto.MetricFamily) []windowSeries {
	var h history // reuses the series naming and the cap on series
	h.add(time.Time{}, nil)
	sampleRefusals(staticGatherer(mfs), &h, time.Time{}, nil)
	return h.window().Series
}

// reasonRow is one line of the reasons table: the chart's colour and recent count beside the total.
type reasonRow struct {
	Name, Colour  string
	Recent, Total float64
}

func reasonRows(all []windowSeries, recent []chartLegend) []reasonRow {
	rows := make([]reasonRow, 0, len(all))
	for _, s := range all {
		row := reasonRow{Name: s.Name, Total: s.Total}
		for _, l := range recent {
			if l.Name == s.Name {
				row.Colour, row.Recent = l.Colour, l.Total
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// staticGatherer serves metric families already gathered.
type staticGatherer []*dto.MetricFamily

func (s staticGatherer) Gather() ([]*dto.MetricFamily, error) { return s, nil }

// humanBytes formats a byte count in binary units, as the config spells them.
func humanBytes(f float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 || f >= 100 || f == float64(int64(f)) {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// roundDur prints a duration to the second, or the minute past an hour.
func roundDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	if d >= time.Minute && d%time.Minute < time.Second {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.Round(time.Second).String()
}

// adminHandler is the admin address's handler: the admin API with the status page at GET / and its
// lift form at POST /lift.
func (a *App) adminHandler() http.Handler {
	api := adminHandler(a.srv, a.gate, a.reg)
	o := StatusOptions{
		Gatherer: a.reg,
		History:  &a.hist,
		Upstreams: func(ctx context.Context) []upstreamState {
			return a.probeUpstreams(ctx, min(a.cfg.Timeouts.Dial, statusProbeTimeout))
		},
		Unban:      api,
		Version:    Version,
		Started:    a.start,
		LastReload: a.LastReload,
	}
	if g := a.gate; g != nil {
		o.TopBans, o.Tracked = g.TopBans, g.Tracked
		// A browser's form cannot send a Bearer header, and a token typed into a page is a token in
		// the browser's history and autofill: with admin.token_file set the page shows no lift
		// button and says to lift with `kafkaguard bans lift`.
		o.CanLift = func(*http.Request) bool { return a.token.Load() == nil }
		o.LiftNeedsToken = func() bool { return a.token.Load() != nil }
	}
	status := StatusHandler(o)
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("GET /{$}", status)
	mux.Handle("POST /lift", status)
	mux.Handle("GET /config", configHandler(a.config))
	return a.guard.wrap(mux)
}

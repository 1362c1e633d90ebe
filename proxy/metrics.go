package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafkaguard/kafkaguard/framing"
)

// Metrics holds kafkaguard's Prometheus collectors. A nil *Metrics is valid and
// records nothing, so tests and tools can run a Server without a registry.
//
// Counters on the forwarding path are resolved once per API key at
// construction, so counting a forwarded frame is an array index and an atomic
// add, never a label lookup.
type Metrics struct {
	rejected        *prometheus.CounterVec
	forwarded       []prometheus.Counter // by api key; the last entry is "unknown"
	bytesIn         prometheus.Counter
	bytesOut        prometheus.Counter
	connsActive     prometheus.Gauge
	connsTotal      prometheus.Counter
	connsRefused    *prometheus.CounterVec
	poolWait        prometheus.Histogram
	dialErrors      prometheus.Counter
	cutOverBudget   prometheus.Counter
	cutThrough      prometheus.Counter
	rewritten       *prometheus.CounterVec
	rewriteUnmapped prometheus.Counter
	localResponses  *prometheus.CounterVec
	bans            prometheus.Counter
	upstreamCloses  *prometheus.CounterVec
	closed          *prometheus.CounterVec
	closedBy        [numReasons]prometheus.Counter // children of closed, by reason
	saslLogins      *prometheus.CounterVec         // sasl.go
}

// NewMetrics creates the collectors and registers them with reg. Gauges whose
// value lives elsewhere (pool bytes, active bans) are registered as
// GaugeFuncs by whoever owns the pool and the gate (cmd/kafkaguard).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkaguard_frames_rejected_total",
			Help: "Requests or connections refused, by reason and API (\"none\" before a header was read).",
		}, []string{"reason", "api"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_bytes_total", Help: "Bytes forwarded, by direction.",
			ConstLabels: prometheus.Labels{"direction": "client_to_upstream"},
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_bytes_total", Help: "Bytes forwarded, by direction.",
			ConstLabels: prometheus.Labels{"direction": "upstream_to_client"},
		}),
		connsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kafkaguard_connections_active", Help: "Client connections open now.",
		}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_connections_total", Help: "Client connections accepted (after the gate).",
		}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkaguard_connections_refused_total",
			Help: "Client connections closed at accept before any byte was read, by reason.",
		}, []string{"reason"}),
		poolWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kafkaguard_pool_wait_seconds",
			Help:    "Time a connection waited for a chunk when the pool budget was spent.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
		dialErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_upstream_dial_errors_total", Help: "Failed dials to an upstream broker.",
		}),
		cutOverBudget: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_cut_through_over_budget_total",
			Help: "Frames larger than proxy.cut_through_bytes stored whole instead, proxy.cut_through_budget being spent.",
		}),
		cutThrough: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_cut_through_frames_total",
			Help: "Frames larger than proxy.cut_through_bytes cut through: sent on to the broker as they arrived, not stored whole.",
		}),
		rewritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkaguard_responses_rewritten_total",
			Help: "Responses whose broker addresses were rewritten, by API.",
		}, []string{"api"}),
		rewriteUnmapped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_rewrite_unmapped_brokers_total",
			Help: "Broker entries no listener fronts, left as the broker sent them (set rewrite.unmapped_port).",
		}),
		localResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkaguard_local_responses_total",
			Help: "Responses kafkaguard answered itself instead of the broker, by API and error.",
		}, []string{"api", "error"}),
		bans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kafkaguard_bans_total", Help: "Bans imposed on source addresses.",
		}),
		upstreamCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkaguard_upstream_closes_total",
			Help: "Client connections closed because of the broker side (not an offence of the client), by reason.",
		}, []string{"reason"}),
	}
	forwarded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkaguard_frames_forwarded_total", Help: "Requests forwarded upstream, by API.",
	}, []string{"api"})
	m.forwarded = make([]prometheus.Counter, int(framing.MaxKnownKey)+2)
	for k := range m.forwarded {
		m.forwarded[k] = forwarded.WithLabelValues(framing.APIName(int16(k)))
	}
	m.forwarded[len(m.forwarded)-1] = forwarded.WithLabelValues("unknown")
	// Refusal series exist from the start, so their rates start at zero.
	for _, r := range []string{"banned", "per_ip_cap", "rate"} {
		m.connsRefused.WithLabelValues(r)
	}
	for _, r := range []reason{reasonRequestTimeout, reasonUpstreamClosed, reasonUpstreamError} {
		m.upstreamCloses.WithLabelValues(r.String())
	}
	m.closed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkaguard_connections_closed_total",
		Help: "Client connections closed, by the reason the connection's close log line gives (offence or not).",
	}, []string{"reason"})
	for r := range m.closedBy {
		m.closedBy[r] = m.closed.WithLabelValues(closeLabel(reason(r)))
	}
	if reg != nil {
		reg.MustRegister(m.rejected, forwarded, m.bytesIn, m.bytesOut, m.connsActive, m.connsTotal,
			m.connsRefused, m.poolWait, m.dialErrors, m.cutOverBudget, m.cutThrough, m.rewritten, m.rewriteUnmapped, m.localResponses, m.bans, m.upstreamCloses, m.closed)
	}
	m.saslLogins = newSaslLogins(reg)
	return m
}

func (m *Metrics) reject(r reason, api string) {
	if m != nil {
		m.rejected.WithLabelValues(r.String(), api).Inc()
	}
}

func (m *Metrics) forward(key int16, n int) {
	if m == nil {
		return
	}
	i := int(key)
	if i < 0 || i >= len(m.forwarded)-1 {
		i = len(m.forwarded) - 1
	}
	m.forwarded[i].Inc()
	m.bytesIn.Add(float64(n))
}

func (m *Metrics) sent(n int) {
	if m != nil {
		m.bytesOut.Add(float64(n))
	}
}

func (m *Metrics) connOpened() {
	if m != nil {
		m.connsTotal.Inc()
		m.connsActive.Inc()
	}
}

// connClosed counts a connection's end under the reason it closed for,
// before the active gauge drops: a test that saw the gauge drop sees the
// count.
func (m *Metrics) connClosed(r reason) {
	if m != nil {
		if r < numReasons {
			m.closedBy[r].Inc()
		}
		m.connsActive.Dec()
	}
}

// closeLabel is a reason's label in kafkaguard_connections_closed_total: a
// connection closed before anything set a reason is "none".
func closeLabel(r reason) string {
	if r == reasonNone {
		return "none"
	}
	return r.String()
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.connsRefused.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) dialError() {
	if m != nil {
		m.dialErrors.Inc()
	}
}

func (m *Metrics) overCutBudget() {
	if m != nil {
		m.cutOverBudget.Inc()
	}
}

func (m *Metrics) cutFrame() {
	if m != nil {
		m.cutThrough.Inc()
	}
}

func (m *Metrics) rewrite(api string) {
	if m != nil {
		m.rewritten.WithLabelValues(api).Inc()
	}
}

func (m *Metrics) unmapped() {
	if m != nil {
		m.rewriteUnmapped.Inc()
	}
}

func (m *Metrics) local(api, errName string) {
	if m != nil {
		m.localResponses.WithLabelValues(api, errName).Inc()
	}
}

// Banned counts a ban; a hook for limits.GateOptions.OnBan.
func (m *Metrics) Banned() {
	if m != nil {
		m.bans.Inc()
	}
}

// PoolWait is a hook for limits.PoolOptions.OnWait.
func (m *Metrics) PoolWait(seconds float64) {
	if m != nil {
		m.poolWait.Observe(seconds)
	}
}

// upstreamClose counts a connection closed because of its broker; reason is
// one of request_timeout, upstream_closed, upstream_error.
func (m *Metrics) upstreamClose(r reason) {
	if m != nil {
		m.upstreamCloses.WithLabelValues(r.String()).Inc()
	}
}

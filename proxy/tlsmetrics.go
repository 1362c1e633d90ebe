package proxy

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSMetrics exports kafkaguard_tls_certificate_expiry_timestamp_seconds
// {listener, role} for every TLSFiles built with it: one server and one
// upstream source per listener, a newer one replacing the older, so the
// series are as many as the config's files; Forget drops the series of a
// listener a reload removed. A nil *TLSMetrics records
// nothing. Collecting triggers each source's file check, so the
// gauge follows rotated files even on a listener nobody connects to.
type TLSMetrics struct {
	desc *prometheus.Desc
	mu   sync.Mutex              // guards srcs
	srcs map[[2]string]*TLSFiles // by listener and kind
}

// NewTLSMetrics creates the collector and registers it with reg (if not nil).
func NewTLSMetrics(reg prometheus.Registerer) *TLSMetrics {
	m := &TLSMetrics{desc: prometheus.NewDesc("kafkaguard_tls_certificate_expiry_timestamp_seconds",
		"When each loaded certificate stops being valid (Unix seconds); for a CA bundle, the first of its valid certificates to end. Role: server, client_ca, upstream_ca, upstream_client.",
		[]string{"listener", "role"}, nil), srcs: map[[2]string]*TLSFiles{}}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

func (m *TLSMetrics) add(t *TLSFiles) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.srcs[[2]string{t.opts.Listener, t.kind}] = t
	m.mu.Unlock()
}

// Forget drops t's series, as a config reload does for a listener it removed, so the gauge (and the
// alert on it) never outlives the listener serving the certificate. A newer source under t's listener
// and kind (a listener added at the same address in the same reload) keeps its series: only t itself
// is dropped. A nil *TLSMetrics, or a t it does not hold, is a no-op.
func (m *TLSMetrics) Forget(t *TLSFiles) {
	if m == nil || t == nil {
		return
	}
	k := [2]string{t.opts.Listener, t.kind}
	m.mu.Lock()
	if m.srcs[k] == t {
		delete(m.srcs, k)
	}
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *TLSMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

// Collect implements prometheus.Collector.
func (m *TLSMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	srcs := make([]*TLSFiles, 0, len(m.srcs))
	for _, t := range m.srcs {
		srcs = append(srcs, t)
	}
	m.mu.Unlock()
	now := time.Now()
	for _, t := range srcs {
		t.maybeReload(now)
		for role, exp := range t.cur.Load().expiry {
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(exp.UnixNano())/1e9, t.opts.Listener, role)
		}
	}
}

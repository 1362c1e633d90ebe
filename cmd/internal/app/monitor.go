package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// refusalCounters are the counters the status page's chart follows, with
// the prefix its series names take: requests refused on a connection
// (kafkaguard_frames_rejected_total, summed over api) and connections
// refused at accept (banned, per_ip_cap, rate).
var refusalCounters = []struct{ metric, prefix string }{
	{"kafkaguard_frames_rejected_total", ""},
	{"kafkaguard_connections_refused_total", "accept:"},
}

// sampleRefusals reads the refusal counters from g into h. It runs on the
// monitor goroutine (and in tests); buf is reused between calls.
func sampleRefusals(g prometheus.Gatherer, h *history, now time.Time, buf []seriesValue) []seriesValue {
	buf = buf[:0]
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return buf // a broken collector elsewhere: skip this sample rather than record a false zero
	}
	for _, mf := range mfs {
		for _, rc := range refusalCounters {
			if mf.GetName() != rc.metric {
				continue
			}
			for _, m := range mf.GetMetric() {
				reason := "unknown"
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "reason" {
						reason = lp.GetValue()
					}
				}
				buf = append(buf, seriesValue{rc.prefix + reason, m.GetCounter().GetValue()})
			}
		}
	}
	h.add(now, buf)
	return buf
}

// monitor samples the refusal counters every historyEvery until stop is
// closed, after a first sample at once. Start runs it; Stop waits for it.
func (a *App) monitor(every time.Duration, stop <-chan struct{}) {
	var buf []seriesValue
	buf = sampleRefusals(a.reg, &a.hist, time.Now(), buf)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			buf = sampleRefusals(a.reg, &a.hist, now, buf)
		case <-stop:
			return
		}
	}
}

package app

import (
	"sync"
	"time"
)

// The refusal history behind the status page's chart: a fixed ring of
// cumulative counter samples, so its memory is constant whatever an attacker
// does and however long kafkaguard runs.
const (
	// historyEvery is how often the history samples the counters.
	historyEvery = 10 * time.Second
	// historySamples spans 15 minutes of intervals: 90 intervals need 91 samples.
	historySamples = 91
	// historySeries is how many reasons get a series of their own; any more
	// are summed into one "other" series. Reasons come from the code, so a
	// real kafkaguard has fewer than this; the cap is a second fence.
	historySeries = 16
	// otherSeries names the series that sums reasons past historySeries.
	otherSeries = "other"
)

// historyBytes is the history's fixed size for the README's memory budget
// table: the ring of samples (one int64 time and historySeries+1 float64
// counts each) plus the series name headers.
const historyBytes = historySamples*(8+(historySeries+1)*8) + historySeries*16

// seriesValue is one counter reading: a series name and its cumulative count.
type seriesValue struct {
	name  string
	count float64
}

// sample is one reading of every series, cumulative since start.
type sample struct {
	at     int64 // unix nanoseconds
	counts [historySeries + 1]float64
}

// history holds the last historySamples samples of the refusal counters. The
// monitor goroutine writes it (add); status page requests read it (window).
// mu guards every field; nothing re-enters it.
type history struct {
	mu    sync.Mutex
	names [historySeries]string // series names in order of first appearance
	nname int
	ring  [historySamples]sample
	next  int // where the next sample goes
	n     int // samples held, at most historySamples
}

// add records one sample. Reasons not seen before take the next free series;
// when all are taken they count towards "other". It allocates nothing.
func (h *history) add(at time.Time, vals []seriesValue) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.ring[h.next]
	*s = sample{at: at.UnixNano()}
	for _, v := range vals {
		s.counts[h.index(v.name)] += v.count
	}
	h.next = (h.next + 1) % historySamples
	h.n = min(h.n+1, historySamples)
}

// index returns the slot of series name, claiming a free one if need be.
func (h *history) index(name string) int {
	for i := range h.nname {
		if h.names[i] == name {
			return i
		}
	}
	if h.nname < historySeries {
		h.names[h.nname] = name
		h.nname++
		return h.nname - 1
	}
	return historySeries
}

// historyWindow is what the chart draws: per series, the increase in each
// interval between consecutive samples, oldest first.
type historyWindow struct {
	From, To  time.Time
	Intervals int
	Series    []windowSeries // series with any increase in the window, by total, largest first
}

type windowSeries struct {
	Name   string
	Deltas []float64 // len Intervals
	Total  float64
}

// window returns the increases over the samples held. A counter that went
// down (it cannot, in one process, but a reload may one day rebuild the
// registry) counts as starting from zero.
func (h *history) window() historyWindow {
	h.mu.Lock()
	defer h.mu.Unlock()
	var w historyWindow
	if h.n < 2 {
		return w
	}
	first := (h.next - h.n + historySamples) % historySamples
	at := func(i int) *sample { return &h.ring[(first+i)%historySamples] }
	w.From, w.To = time.Unix(0, at(0).at), time.Unix(0, at(h.n-1).at)
	w.Intervals = h.n - 1
	for k := range historySeries + 1 {
		name := otherSeries
		if k < historySeries {
			if k >= h.nname {
				continue
			}
			name = h.names[k]
		}
		ws := windowSeries{Name: name, Deltas: make([]float64, w.Intervals)}
		for i := range w.Intervals {
			d := at(i + 1).counts[k] - at(i).counts[k]
			if d < 0 {
				d = at(i + 1).counts[k]
			}
			ws.Deltas[i] = d
			ws.Total += d
		}
		if ws.Total > 0 {
			w.Series = append(w.Series, ws)
		}
	}
	for i := 1; i < len(w.Series); i++ { // a handful of series: insertion sort
		for j := i; j > 0 && w.Series[j].Total > w.Series[j-1].Total; j-- {
			w.Series[j], w.Series[j-1] = w.Series[j-1], w.Series[j]
		}
	}
	return w
}

package app

import (
	"fmt"
	"time"
)

// The refusal chart: stacked bars, one per sampling interval, drawn as
// inline SVG rectangles so the page needs no script and loads nothing.
const (
	chartW, chartH = 720, 160
	chartPad       = 4
	chartTop       = 18 // room for the scale's label
	chartAxis      = 16 // room for the time axis' labels below the bars
)

// chartPalette colours the series in order, largest first; distinct enough
// to tell apart in a legend of a few entries.
var chartPalette = [historySeries + 1]string{
	"#d62728", "#ff7f0e", "#1f77b4", "#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#17becf",
	"#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#393b79",
}

type chart struct {
	W, H      int
	Span      string // "15m0s" when the ring is full
	Intervals int
	Max       float64 // the tallest bar, per interval
	Total     float64 // every refusal in the window
	Rects     []chartRect
	Legend    []chartLegend
}

type chartRect struct {
	X, Y, W, H float64
	Colour     string
	Title      string
}

type chartLegend struct {
	Name, Colour string
	Total        float64
}

// drawChart lays out w as stacked bars scaled to the tallest.
func drawChart(w historyWindow) chart {
	c := chart{W: chartW, H: chartH, Intervals: w.Intervals}
	if w.Intervals == 0 {
		return c
	}
	c.Span = roundDur(w.To.Sub(w.From))
	for i := range w.Intervals {
		var sum float64
		for _, s := range w.Series {
			sum += s.Deltas[i]
		}
		c.Max = max(c.Max, sum)
	}
	for k, s := range w.Series {
		c.Legend = append(c.Legend, chartLegend{s.Name, chartPalette[k%len(chartPalette)], s.Total})
		c.Total += s.Total
	}
	if c.Max == 0 {
		return c
	}
	step := float64(chartW-2*chartPad) / float64(historySamples-1) // bars keep their width as the ring fills
	scale := float64(chartH-chartTop-chartAxis) / c.Max
	every := w.To.Sub(w.From) / time.Duration(w.Intervals)
	for i := range w.Intervals {
		x := float64(chartW-chartPad) - float64(w.Intervals-i)*step // newest on the right
		y := float64(chartH - chartAxis)
		for k, s := range w.Series {
			d := s.Deltas[i]
			if d == 0 {
				continue
			}
			h := d * scale
			y -= h
			ago := every * time.Duration(w.Intervals-1-i)
			c.Rects = append(c.Rects, chartRect{X: x, Y: y, W: step * 0.85, H: h,
				Colour: chartPalette[k%len(chartPalette)],
				Title:  fmt.Sprintf("%s: %.0f, %s ago", s.Name, d, roundDur(ago))})
		}
	}
	return c
}

package main

import (
	"image/color"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var pathColors = [nPaths]color.Color{
	color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}, // A blue
	color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff}, // B orange
	color.RGBA{R: 0x55, G: 0xa8, B: 0x68, A: 0xff}, // C green
	color.RGBA{R: 0x81, G: 0x72, B: 0xb3, A: 0xff}, // D purple
	color.RGBA{R: 0x93, G: 0x78, B: 0x60, A: 0xff}, // E brown
}

var seriesColors = []color.Color{
	color.RGBA{R: 0xc4, G: 0x4e, B: 0x52, A: 0xff},
	color.RGBA{R: 0x81, G: 0x72, B: 0xb3, A: 0xff},
	color.RGBA{R: 0x93, G: 0x78, B: 0x60, A: 0xff},
	color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff},
}

// charts writes throughput.png, latency-cdf.png and memory.png for the
// workloads that ran.
func (b *bench) charts() error {
	if err := b.throughputChart(); err != nil {
		return err
	}
	if err := b.latencyChart(); err != nil {
		return err
	}
	return b.memoryChart()
}

func (b *bench) throughputChart() error {
	var names []string
	var vals [nPaths]plotter.Values
	for _, r := range b.rows {
		if r.metric != "throughput" {
			continue
		}
		names = append(names, r.workload)
		for _, t := range b.targets {
			p := t.path
			vals[p] = append(vals[p], median(r.vals[p]))
		}
	}
	if len(names) == 0 {
		return nil
	}
	pl := plot.New()
	pl.Title.Text = "Throughput (median of rounds)"
	pl.Y.Label.Text = "MiB/s of record values"
	w := vg.Points(22)
	for i, t := range b.targets {
		p := t.path
		bars, err := plotter.NewBarChart(vals[p], w)
		if err != nil {
			return err
		}
		bars.Color = pathColors[p]
		bars.LineStyle.Width = 0
		bars.Offset = (vg.Length(i) - vg.Length(len(b.targets)-1)/2) * w
		pl.Add(bars)
		pl.Legend.Add(pathNames[p], bars)
	}
	pl.Legend.Top = true
	pl.NominalX(names...)
	pl.X.Min, pl.X.Max = -0.6, float64(len(names))-0.4
	top := 0.0
	for _, v := range vals {
		for _, x := range v {
			top = max(top, x)
		}
	}
	pl.Y.Min, pl.Y.Max = 0, top*1.35 // headroom for the legend
	return pl.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(b.s.out, "throughput.png"))
}

func (b *bench) latencyChart() error {
	if len(b.latency[pathA]) == 0 {
		return nil
	}
	pl := plot.New()
	pl.Title.Text = "Produce latency CDF at fixed rate"
	pl.X.Label.Text = "latency (ms, log scale)"
	pl.Y.Label.Text = "fraction of records"
	pl.X.Scale = plot.LogScale{}
	pl.X.Tick.Marker = plot.LogTicks{Prec: -1}
	for _, t := range b.targets {
		p := t.path
		s := b.latency[p]
		if len(s) == 0 {
			continue
		}
		const points = 2000
		xys := make(plotter.XYs, 0, points+1)
		for i := range points + 1 {
			q := float64(i) / points
			d := percentile(s, max(q, 1e-9))
			xys = append(xys, plotter.XY{X: max(ms(d), 0.001), Y: q})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = pathColors[p]
		l.Width = vg.Points(1.5)
		pl.Add(l)
		pl.Legend.Add(pathNames[p], l)
	}
	pl.Legend.Left = true
	pl.Legend.Top = true
	pl.Add(plotter.NewGrid())
	return pl.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(b.s.out, "latency-cdf.png"))
}

func (b *bench) memoryChart() error {
	if len(b.hostiles) == 0 {
		return nil
	}
	pl := plot.New()
	pl.Title.Text = "kafkaguard RSS under attack"
	pl.X.Label.Text = "seconds since the attack started"
	pl.Y.Label.Text = "RSS (MiB)"
	var end time.Duration
	for i, h := range b.hostiles {
		if len(h.series) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(h.series))
		for j, s := range h.series {
			xys[j] = plotter.XY{X: s.t.Seconds(), Y: s.rssMiB}
		}
		end = max(end, h.series[len(h.series)-1].t)
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = seriesColors[i%len(seriesColors)]
		l.Width = vg.Points(1.5)
		pl.Add(l)
		pl.Legend.Add(h.name, l)
	}
	limit, err := plotter.NewLine(plotter.XYs{{X: 0, Y: poolBudgetMiB + 32}, {X: end.Seconds(), Y: poolBudgetMiB + 32}})
	if err != nil {
		return err
	}
	limit.Color = color.Gray{Y: 0x60}
	limit.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	pl.Add(limit)
	pl.Legend.Add("pool budget + 32 MiB", limit)
	pl.Legend.Top = true
	pl.Y.Min = 0
	pl.Add(plotter.NewGrid())
	return pl.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(b.s.out, "memory.png"))
}

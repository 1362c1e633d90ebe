package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"time"
)

// poolBudgetMiB is kafkaguard's default pool budget (config.Default).
const poolBudgetMiB = 64

func (b *bench) report(w io.Writer, took time.Duration) {
	fmt.Fprintf(w, "## kafkaguard-bench\n\n")
	var names []string
	var extra []int // paths beyond C: D (--splice-sf), E (--peer)
	for _, t := range b.targets {
		names = append(names, t.name)
		if t.path > pathC {
			extra = append(extra, t.path)
		}
	}
	fmt.Fprintf(w, "%s, %s/%s, %d CPUs, %s; upstream %s; %d rounds × %v per path, alternating %s; %s; took %v.\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(),
		b.upstreamDesc(), b.s.rounds, b.s.duration, strings.Join(names, ","), b.pinDesc(), took.Round(time.Second))
	if b.s.peer != "" {
		fmt.Fprintf(w, "E peer: `%s`.\n", b.s.peer)
	}
	if b.tls != nil {
		fmt.Fprintf(w, "--tls: clients speak TLS to B kafkaguard and to C, a minimal TLS-terminating relay (crypto/tls and io.Copy, no parsing, no splice), "+
			"both with the same certificate (ECDSA P-256) and whatever crypto/tls negotiates with franz-go; both speak plaintext to the broker; A is plaintext.\n")
	}
	fmt.Fprintf(w, "Medians over rounds; ratios are medians of the per-round ratios (each round runs the paths back to back, so drift cancels). kafkaguard (the built binary, default config: 1 MiB limit, 64 MiB pool of 32 KiB chunks, gate on; "+
		"a fresh process for each attack, its pool high water read from /metrics) and the relay "+
		"run as child processes; their CPU and RSS come from /proc. Clients and kfake share the parent process.\n\n")

	if len(b.rows) > 0 {
		dHead, dSep := "", ""
		for _, p := range extra {
			n := pathNames[p][:1]
			dHead += fmt.Sprintf(" %s | %s/C | %s CPU s/round |", pathNames[p], n, n)
			dSep += "---:|---:|---:|"
		}
		fmt.Fprintln(w, "| workload | metric | A direct | B kafkaguard | C relay | B/A | B/C | B/C range | kafkaguard CPU s/round | relay CPU s/round | kafkaguard peak RSS MiB | errors A/B/C |"+dHead)
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"+dSep)
		for _, r := range b.rows {
			a, bb, c := median(r.vals[pathA]), median(r.vals[pathB]), median(r.vals[pathC])
			lo, hi := minMax(r.ratios(pathB, pathC))
			d := ""
			for _, p := range extra {
				d += fmt.Sprintf(" %s | %s | %s |", f2(median(r.vals[p])), f3(median(r.ratios(p, pathC))), f2(median(r.cpu[p])))
			}
			fmt.Fprintf(w, "| %s | %s (%s) | %s | %s | %s | %s | %s | %s–%s | %s | %s | %.0f | %d/%d/%d |%s\n",
				r.workload, r.metric, r.unit, f2(a), f2(bb), f2(c), f3(median(r.ratios(pathB, pathA))), f3(median(r.ratios(pathB, pathC))),
				f3(lo), f3(hi), f2(median(r.cpu[pathB])), f2(median(r.cpu[pathC])), r.peakMiB, r.errs[pathA], r.errs[pathB], r.errs[pathC], d)
		}
		fmt.Fprintln(w)
	}

	b.cpuPerByteTable(w)

	if len(b.hostiles) > 0 {
		fmt.Fprintf(w, "Attacks on kafkaguard (B) only; attackers bind distinct 127.x.y.z source addresses so the per-IP gate does not simply refuse them. "+
			"A well-behaved client produces %d rec/s × %d B through kafkaguard throughout; its quiet p99 is %.2f ms.\n\n",
			b.s.goodRate, b.s.latBytes, ms(percentile(b.quiet.samples, 0.99)))
		fmt.Fprintln(w, "| attack | what | conns (flood: dials tried / failed) | closed by kafkaguard | median time to close | RSS before → peak MiB | pool high water MiB | kafkaguard CPU s | good p99 ms (quiet → attack) | p99 ratio | good errors / sent |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, h := range b.hostiles {
			conns := fmt.Sprint(h.conns)
			if h.name == wFlood {
				conns = fmt.Sprintf("%d / %d", h.attempts, h.dialFailed)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d | %v | %.0f → %.0f | %.0f | %.2f | %.2f → %.2f | %s | %d / %d |\n",
				h.name, h.what, conns, h.closed, h.medianClose.Round(time.Millisecond), h.baseRSS, h.peakRSS, h.poolHighWater, h.cpu,
				ms(h.quietP99), ms(h.goodP99), f2(ms(h.goodP99)/ms(h.quietP99)), h.goodErrs, h.goodSent)
		}
		fmt.Fprintln(w)
	}

	for _, silent := range []bool{false, true} {
		title := "idle connections (after one ApiVersions)"
		if silent {
			title = "silent connections (connected, nothing sent: no broker dialled)"
		}
		header := false
		for _, r := range b.idle {
			if r.silent != silent {
				continue
			}
			if !header {
				fmt.Fprintf(w, "| %s | conns | RSS before → with conns MiB | per conn KiB | per conn KiB after FreeOSMemory |\n", title)
				fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
				header = true
			}
			fmt.Fprintf(w, "| %s | %d | %.1f → %.1f | %.1f | %.1f |\n", r.path, r.conns, r.baseMiB, r.withConnMiB, r.rawKiB, r.afterGCKiB)
		}
		if header {
			fmt.Fprintln(w)
		}
	}

	b.manyTable(w)
	b.targetsTable(w)
	fmt.Fprintf(w, "Charts in %s: throughput.png, latency-cdf.png, memory.png.", b.s.out)
	if len(b.profiles) > 0 {
		fmt.Fprintf(w, " kafkaguard profiles: %s (and .allocs.pprof / .allocs-base.pprof beside each).", strings.Join(b.profiles, ", "))
	}
	fmt.Fprintln(w)
}

// cpuPerByteTable prints each proxy's CPU seconds per GiB of record values
// over all rounds of each throughput workload, against the relay's: with the
// proxy pinned to cores of its own (--pin), the cost of the proxy itself.
func (b *bench) cpuPerByteTable(w io.Writer) {
	var rows []*row
	for _, r := range b.rows {
		if r.metric == "throughput" {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	var paths []int
	for _, t := range b.targets {
		if t.proc != nil {
			paths = append(paths, t.path)
		}
	}
	head, sep := "| workload |", "|---|"
	for _, p := range paths {
		head += " " + pathNames[p] + " CPU s/GiB |"
		sep += "---:|"
		if p != pathC {
			head += " " + pathNames[p][:1] + "/C CPU per byte |"
			sep += "---:|"
		}
	}
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, sep)
	for _, r := range rows {
		line := "| " + r.workload + " |"
		c := r.cpuPerGiB(pathC)
		for _, p := range paths {
			x := r.cpuPerGiB(p)
			line += " " + f3(x) + " |"
			if p != pathC {
				line += " " + f2(x/c) + " |"
			}
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)
}

// cpuPerGiB is path p's CPU seconds over all rounds per GiB moved in them.
func (r *row) cpuPerGiB(p int) float64 {
	var cpu, bytes float64
	for i := range min(len(r.cpu[p]), len(r.bytes[p])) {
		cpu += r.cpu[p][i]
		bytes += r.bytes[p][i]
	}
	if bytes == 0 {
		return math.NaN()
	}
	return cpu / (bytes / (1 << 30))
}

func (b *bench) upstreamDesc() string {
	if b.synthetic {
		return "in-process kfake, 1 broker, blackhole produce, synthetic fetch (1 KiB incompressible records)"
	}
	return b.upstream
}

// targetsTable checks the figures against issue 6's targets.
func (b *bench) targetsTable(w io.Writer) {
	type tgt struct{ name, figure, verdict string }
	var ts []tgt
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	for _, r := range b.rows {
		if r.metric == "throughput" {
			x := median(r.ratios(pathB, pathC))
			ts = append(ts, tgt{r.workload + " B/C ≥ 0.95", f3(x), verdict(x >= 0.95)})
		}
		if r.metric == "p99" {
			add := median(r.vals[pathB]) - median(r.vals[pathA])
			addC := median(r.vals[pathB]) - median(r.vals[pathC])
			ts = append(ts, tgt{"added p99 at " + fmt.Sprint(b.s.rate) + " rec/s < 0.5 ms",
				fmt.Sprintf("B−A %.3f ms (B−C %.3f ms)", add, addC), verdict(add < 0.5)})
		}
	}
	for _, h := range b.hostiles {
		if h.name == wSlow {
			ts = append(ts, tgt{fmt.Sprintf("RSS under %d slow under-limit frames ≤ pool %d MiB + 32 MiB", h.conns, poolBudgetMiB),
				fmt.Sprintf("peak %.0f MiB", h.peakRSS), verdict(h.peakRSS <= poolBudgetMiB+32)})
		}
	}
	for _, r := range b.idle {
		if strings.HasPrefix(r.path, "B") && !r.silent {
			// The steady-state cost: RSS per connection once a GC has
			// returned the garbage their setup made (the runtime does that
			// by itself within minutes for connections that stay idle).
			ts = append(ts, tgt{fmt.Sprintf("%d idle connections ≤ 16 KiB each (steady state, after GC)", r.conns),
				fmt.Sprintf("%.1f KiB (%.1f before the GC)", r.afterGCKiB, r.rawKiB), verdict(r.afterGCKiB <= 16)})
		}
	}
	if len(ts) == 0 {
		return
	}
	fmt.Fprintln(w, "| target (issue 6) | figure | verdict |")
	fmt.Fprintln(w, "|---|---:|---|")
	for _, t := range ts {
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.name, t.figure, t.verdict)
	}
	fmt.Fprintln(w)
}

// ratios returns vals[num][i] / vals[den][i] for every round i.
func (r *row) ratios(num, den int) []float64 {
	var out []float64
	for i := range min(len(r.vals[num]), len(r.vals[den])) {
		out = append(out, r.vals[num][i]/r.vals[den][i])
	}
	return out
}

func minMax(vs []float64) (float64, float64) {
	if len(vs) == 0 {
		return math.NaN(), math.NaN()
	}
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

func f2(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

func f3(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.3f", v)
}

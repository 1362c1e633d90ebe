package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Paths, in round order.
const (
	pathA = iota // direct
	pathB        // kafkaguard
	pathC        // plain relay
	pathD        // splice store-and-forward relay prototype (--splice-sf)
	pathE        // another proxy (--peer)
	nPaths
)

var pathNames = [nPaths]string{"A direct", "B kafkaguard", "C relay", "D splice s&f", "E peer"}

// row is one measured figure on every path, one value per round.
type row struct {
	workload, metric, unit string
	vals                   [nPaths][]float64
	cpu                    [nPaths][]float64 // CPU seconds of the path's process per round (B, C)
	bytes                  [nPaths][]float64 // record value bytes moved per round (throughput rows)
	errs                   [nPaths]int64
	peakMiB                float64 // kafkaguard's peak RSS during the workload
	higherBetter           bool
}

// hostile is the outcome of one attack on kafkaguard.
type hostile struct {
	name, what         string
	conns              int
	closed             int           // attacking connections closed by kafkaguard before the attack ended
	medianClose        time.Duration // median time from first byte to being closed
	attempts           int           // flood: connections tried
	dialFailed         int           // flood: dials that failed (backlog full, timeouts)
	baseRSS, peakRSS   float64       // MiB
	poolHighWater      float64       // MiB
	cpu                float64
	goodP99, quietP99  time.Duration
	goodErrs, goodSent int64
	series             []sample
}

// idleResult is the memory cost of idle connections through one path.
type idleResult struct {
	path                 string
	silent               bool // connected and sent nothing (idle-silent), else one ApiVersions first
	conns                int
	rawKiB, afterGCKiB   float64 // RSS delta per connection, as is and after FreeOSMemory
	baseMiB, withConnMiB float64
}

type bench struct {
	s         settings
	upstream  string
	synthetic bool
	guardBin  string // the kafkaguard binary built (or given by --kafkaguard)
	kg        *guard
	kgRuns    int // kafkaguard processes started, for their log names
	relay     *child
	tls       *benchTLS // --tls: the certificate B and C serve; nil without
	pin       pinning
	targets   []target // A, B, C and, with --splice-sf, D
	payload   payload

	rows     []*row
	latency  [nPaths][]time.Duration // every latency sample of every round, for the CDF
	hostiles []*hostile
	idle     []idleResult
	many     []manyResult
	quiet    latencyResult // the well-behaved client without any attack
	profiles []string
}

// run drives every selected workload, writes the report to w and the
// charts to s.out, and returns the bench with its figures.
func run(ctx context.Context, s settings, w io.Writer) (*bench, error) {
	b := &bench{s: s, upstream: s.upstream, payload: newPayload(4 << 20)}
	return b, b.run(ctx, w)
}

func (b *bench) run(ctx context.Context, w io.Writer) error {
	s := b.s
	if err := os.MkdirAll(s.out, 0o755); err != nil {
		return err
	}
	if s.cpuprofile != "" {
		if err := os.MkdirAll(s.cpuprofile, 0o755); err != nil {
			return err
		}
	}
	if b.upstream == "" {
		c, err := kfake.NewCluster(
			kfake.NumBrokers(1),
			kfake.SeedTopics(3, topic),
			kfake.BlackholeProduce(),
			kfake.SyntheticFetch(kfake.SyntheticBatch{RecordBytes: 1024, RandomFrac: 1}),
		)
		if err != nil {
			return fmt.Errorf("kfake: %w", err)
		}
		defer c.Close()
		b.upstream = c.ListenAddrs()[0]
		b.synthetic = true
	}
	var err error
	if b.pin, err = setupPinning(s.pin, s.cpuQuota); err != nil {
		return err
	}
	defer b.pin.release()
	if s.tls {
		if b.tls, err = newBenchTLS(s.out); err != nil {
			return err
		}
	}
	b.guardBin = s.guardBin
	if b.guardBin == "" {
		dir, err := os.MkdirTemp("", "kafkaguard-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if b.guardBin, err = buildGuard(ctx, dir); err != nil {
			return err
		}
	}
	if err := b.startGuard(); err != nil {
		return err
	}
	defer func() {
		if err := b.kg.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "kafkaguard-bench:", err)
		}
	}()
	relayMode, relayLog := modeRelay, "relay.log"
	var relayEnv []string
	var clientTLS *tls.Config
	if b.tls != nil {
		relayMode, relayLog, relayEnv, clientTLS = modeTLSRelay, "tlsrelay.log", b.tls.childEnv(), b.tls.client
	}
	b.relay, err = startChild(b.pin, relayMode, b.upstream, filepath.Join(s.out, relayLog), relayEnv...)
	if err != nil {
		return err
	}
	defer b.relay.stop()
	b.targets = []target{
		{path: pathA, name: "A", seed: b.upstream},
		{path: pathB, name: "B", seed: b.kg.addr, proc: b.kg, tls: clientTLS},
		{path: pathC, name: "C", seed: b.relay.addr, proc: b.relay, relay: true, tls: clientTLS},
	}
	if s.spliceSF {
		sf, err := startChild(b.pin, modeSFRelay, b.upstream, filepath.Join(s.out, "sfrelay.log"))
		if err != nil {
			return err
		}
		defer sf.stop()
		b.targets = append(b.targets, target{path: pathD, name: "D", seed: sf.addr, proc: sf, relay: true})
	}
	if s.peer != "" {
		pe, err := startPeer(b.pin, s.peer, b.upstream, filepath.Join(s.out, "peer.log"))
		if err != nil {
			return err
		}
		defer pe.stop()
		b.targets = append(b.targets, target{path: pathE, name: "E", seed: pe.addr, proc: pe, relay: true})
	}
	if !b.synthetic && contains(s.workloads, wFetch) {
		if err := b.preload(ctx); err != nil {
			return err
		}
	}
	start := time.Now()
	for _, wl := range s.workloads {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: %s\n", time.Since(start).Round(time.Second), wl)
		if err := b.runWorkload(ctx, wl); err != nil {
			return fmt.Errorf("%s: %w", wl, err)
		}
	}
	b.report(w, time.Since(start))
	if err := b.charts(); err != nil {
		return fmt.Errorf("charts: %w", err)
	}
	return nil
}

// startGuard starts a kafkaguard process as path B, replacing the one
// running, if any.
func (b *bench) startGuard() error {
	if b.kg != nil {
		if err := b.kg.stop(); err != nil {
			return err
		}
	}
	b.kgRuns++
	name := "kafkaguard.log"
	if b.kgRuns > 1 {
		name = fmt.Sprintf("kafkaguard-%d.log", b.kgRuns)
	}
	g, err := startGuard(b.pin, b.guardBin, b.upstream, filepath.Join(b.s.out, name), b.tls)
	if err != nil {
		return err
	}
	b.kg = g
	if len(b.targets) > pathB {
		b.targets[pathB].seed, b.targets[pathB].proc = g.addr, g
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (b *bench) runWorkload(ctx context.Context, wl string) error {
	d := b.s.duration
	switch wl {
	case wProduce1K, wProduce64K:
		size, maxRecords := 1<<10, 2_000_000
		if wl == wProduce64K {
			size, maxRecords = 64<<10, 100_000
		}
		for _, n := range b.s.producers {
			name := wl
			if n > 1 {
				name = fmt.Sprintf("%s ×%d producers", wl, n)
			}
			err := b.throughput(ctx, name, func(t target) (tputResult, error) {
				return produceThroughput(ctx, t, b.payload, size, d, maxRecords, n)
			})
			if err != nil {
				return err
			}
		}
		return nil
	case wFetch:
		return b.throughput(ctx, wl, func(t target) (tputResult, error) { return fetchThroughput(ctx, t, d) })
	case wLatency:
		return b.latencyRounds(ctx)
	case wTrickle:
		return b.trickle(ctx)
	case wSlow:
		return b.slowFrames(ctx)
	case wFlood:
		return b.flood(ctx)
	case wIdle:
		return b.idleConns(ctx, false)
	case wIdleSilent:
		return b.idleConns(ctx, true)
	case wMany:
		return b.manyProducers(ctx)
	}
	return fmt.Errorf("unknown workload %q", wl)
}

// profile records kafkaguard's CPU profile of about the next seconds (the
// expected length of workload wl) when --cpuprofile is set, from its admin
// server's /debug/pprof, and returns the function that waits for it and
// saves the allocation profile.
func (b *bench) profile(wl string, seconds float64) (func() error, error) {
	if b.s.cpuprofile == "" {
		return func() error { return nil }, nil
	}
	name := strings.NewReplacer(" ", "", "×", "x").Replace(wl)
	prefix, err := filepath.Abs(filepath.Join(b.s.cpuprofile, "kafkaguard-"+name))
	if err != nil {
		return nil, err
	}
	if err := b.kg.allocs(prefix + ".allocs-base.pprof"); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	g := b.kg
	go func() { done <- g.profile(prefix+".cpu.pprof", max(int(seconds+0.5), 1)) }()
	return func() error {
		if err := <-done; err != nil {
			return err
		}
		b.profiles = append(b.profiles, prefix+".cpu.pprof")
		return g.allocs(prefix + ".allocs.pprof")
	}, nil
}

// roundsSeconds is about how long rounds of d on every path take, warm-ups
// included.
func (b *bench) roundsSeconds(d time.Duration) float64 {
	return float64(b.s.rounds*len(b.targets)) * (d.Seconds() + 0.5)
}

// throughput runs fn on A, B, C in turn, rounds times.
func (b *bench) throughput(ctx context.Context, wl string, fn func(target) (tputResult, error)) error {
	r := &row{workload: wl, metric: "throughput", unit: "MiB/s", higherBetter: true}
	peak, err := b.eachRound(ctx, wl, func(t target) error {
		p := t.path
		before := b.cpuOf(t)
		res, err := fn(t)
		if err != nil {
			return err
		}
		r.vals[p] = append(r.vals[p], res.mibps)
		r.bytes[p] = append(r.bytes[p], float64(res.bytes))
		r.cpu[p] = append(r.cpu[p], b.cpuOf(t)-before)
		r.errs[p] += res.errs
		return nil
	})
	if err != nil {
		return err
	}
	r.peakMiB = peak
	b.rows = append(b.rows, r)
	return nil
}

// eachRound runs each on A, B, C in turn, rounds times, under one profile named name, with
// kafkaguard's peak RSS reset first, and returns that peak in MiB (0 when it cannot be read): the loop
// every timed workload shares.
func (b *bench) eachRound(ctx context.Context, name string, each func(target) error) (peakMiB float64, err error) {
	stop, err := b.profile(name, b.roundsSeconds(b.s.duration))
	if err != nil {
		return 0, err
	}
	resetPeak(b.kg.pid)
	for round := range b.s.rounds {
		for _, t := range b.targets {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			if err := each(t); err != nil {
				return 0, fmt.Errorf("round %d: %w", round+1, err)
			}
		}
	}
	if err := stop(); err != nil {
		return 0, err
	}
	if ps, err := readProc(b.kg.pid); err == nil {
		peakMiB = float64(ps.hwmKiB) / 1024
	}
	return peakMiB, nil
}

func (b *bench) cpuOf(t target) float64 {
	if t.proc == nil {
		return 0
	}
	ps, err := readProc(t.proc.PID())
	if err != nil {
		return 0
	}
	return ps.cpu
}

// latencyRounds runs the fixed-rate producer on A, B, C in turn.
func (b *bench) latencyRounds(ctx context.Context) error {
	qs := []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p99", 0.99}, {"p99.9", 0.999}}
	rows := make([]*row, len(qs))
	for i, q := range qs {
		rows[i] = &row{workload: fmt.Sprintf("latency %d rec/s × %d B", b.s.rate, b.s.latBytes), metric: q.name, unit: "ms"}
	}
	peak, err := b.eachRound(ctx, wLatency, func(t target) error {
		p := t.path
		before := b.cpuOf(t)
		res, err := produceLatency(ctx, t, b.payload, b.s.latBytes, b.s.rate, b.s.duration)
		if err != nil {
			return err
		}
		cpu := b.cpuOf(t) - before
		for i, q := range qs {
			rows[i].vals[p] = append(rows[i].vals[p], ms(percentile(res.samples, q.q)))
			rows[i].cpu[p] = append(rows[i].cpu[p], cpu)
			rows[i].errs[p] += res.errs
		}
		b.latency[p] = append(b.latency[p], res.samples...)
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range rows {
		r.peakMiB = peak
	}
	for p := range b.latency {
		sortDurations(b.latency[p])
	}
	b.rows = append(b.rows, rows...)
	return nil
}

// preload fills a real broker's topic for the fetch workload (a real
// broker has no synthetic fetch): 256 MiB of 1 KiB records, once.
func (b *bench) preload(ctx context.Context) error {
	_, err := produceThroughput(ctx, b.targets[pathA], b.payload, 1<<10, 2*time.Minute, 256<<10, 1)
	return err
}

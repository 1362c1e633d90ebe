package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The many-producers workload (issue 14) measures kafkaguard against the
// relay with --many-producers (default 1000) producers at once, each a
// client of its own from a source address of its own (so the per-IP gate
// counts each alone), each producing 1 KiB records one at a time (the
// next once the last is acknowledged) for one round: total throughput and
// the latency of every record. The 10 000 idle connections of the same
// issue are the idle workload with --idle-conns 10000.

// Source address blocks of the many-producers workload, beside the
// hostile ones.
const (
	blockManyB = 6
	blockManyC = 7
)

// manyResult is one round of many producers on one path.
type manyResult struct {
	path      string
	producers int // clients that completed their warm-up
	mibps     float64
	p50, p99  time.Duration
	cpu       float64 // proxy CPU seconds in the round
	peakRSS   float64 // MiB
	errs      int64
}

func (b *bench) manyProducers(ctx context.Context) error {
	for range b.s.rounds {
		for _, p := range []int{pathB, pathC} {
			if err := ctx.Err(); err != nil {
				return err
			}
			block := byte(blockManyB)
			if p == pathC {
				block = blockManyC
			}
			t := b.targets[p]
			before, err := readProc(t.proc.PID())
			if err != nil {
				return err
			}
			resetPeak(t.proc.PID())
			res, err := manyOn(ctx, t, b.payload, b.s.manyProducers, block, b.s.duration)
			if err != nil {
				return err
			}
			after, err := readProc(t.proc.PID())
			if err != nil {
				return err
			}
			res.path, res.cpu, res.peakRSS = pathNames[p], after.cpu-before.cpu, float64(after.hwmKiB)/1024
			b.many = append(b.many, res)
		}
	}
	return nil
}

// manyOn runs n producers through t for d once they are all connected.
func manyOn(ctx context.Context, t target, p payload, n int, block byte, d time.Duration) (manyResult, error) {
	const size = 1024
	ctx, cancel := context.WithTimeout(ctx, d+2*time.Minute)
	defer cancel()
	cls := make([]*kgo.Client, n)
	defer func() {
		var wg sync.WaitGroup
		for _, cl := range cls {
			if cl != nil {
				wg.Add(1)
				go func() { defer wg.Done(); cl.Close() }()
			}
		}
		wg.Wait()
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var ready atomic.Int64
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ip := sourceIP(block, i)
			dl := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
			seed := t.seed
			opts := append(t.opts(), producerOpts(0)...)
			opts = append(opts, kgo.Dialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
				if t.relay {
					addr = seed
				}
				return dl.DialContext(ctx, network, addr)
			}))
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				return
			}
			cls[i] = cl
			if cl.ProduceSync(ctx, &kgo.Record{Value: p.value(i, size)}).FirstErr() == nil {
				ready.Add(1)
			}
		}()
	}
	wg.Wait()
	if ready.Load() == 0 {
		return manyResult{}, fmt.Errorf("many producers %s: no producer completed its warm-up", t.name)
	}
	lats := make([][]time.Duration, n)
	var errs, acked atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	for i, cl := range cls {
		if cl == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(deadline) && ctx.Err() == nil; k++ {
				t0 := time.Now()
				if err := cl.ProduceSync(ctx, &kgo.Record{Value: p.value(i+k, size)}).FirstErr(); err != nil {
					errs.Add(1)
					continue
				}
				lats[i] = append(lats[i], time.Since(t0))
				acked.Add(size)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sortDurations(all)
	return manyResult{
		producers: int(ready.Load()),
		mibps:     float64(acked.Load()) / el / (1 << 20),
		p50:       percentile(all, 0.50),
		p99:       percentile(all, 0.99),
		errs:      errs.Load(),
	}, nil
}

// manyTable prints every round of the many-producers workload.
func (b *bench) manyTable(w io.Writer) {
	if len(b.many) == 0 {
		return
	}
	fmt.Fprintln(w, "| many producers (1 KiB records, one in flight each) | producers | throughput MiB/s | p50 ms | p99 ms | proxy CPU s | proxy peak RSS MiB | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range b.many {
		fmt.Fprintf(w, "| %s | %d | %.1f | %.2f | %.2f | %.2f | %.0f | %d |\n",
			r.path, r.producers, r.mibps, ms(r.p50), ms(r.p99), r.cpu, r.peakRSS, r.errs)
	}
	fmt.Fprintln(w)
}

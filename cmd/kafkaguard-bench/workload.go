package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const topic = "kafkaguard-bench"

// target is one way to reach the upstream: A direct, B kafkaguard, C relay.
type target struct {
	path  int // pathA, pathB, ...
	name  string
	seed  string
	proc  process     // the process to account CPU and RSS to; nil for A
	relay bool        // dial every broker through seed (a relay cannot rewrite metadata)
	tls   *tls.Config // --tls: speak TLS to seed
}

func (t target) opts() []kgo.Opt {
	o := []kgo.Opt{kgo.SeedBrokers(t.seed), kgo.ClientID("kafkaguard-bench"), kgo.RequestRetries(3)}
	switch {
	case t.relay && t.tls != nil:
		d := &net.Dialer{Timeout: 5 * time.Second}
		seed, cfg := t.seed, t.tls
		o = append(o, kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialTLS(ctx, d, network, seed, cfg)
		}))
	case t.relay:
		d := &net.Dialer{Timeout: 5 * time.Second}
		seed := t.seed
		o = append(o, kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, seed)
		}))
	case t.tls != nil:
		o = append(o, kgo.DialTLSConfig(t.tls))
	}
	return o
}

// process is a child process a path runs in: kafkaguard or a relay.
type process interface {
	PID() int
	FreeOSMemory() error
}

// payload is incompressible bytes that record values are cut from; values
// share it, so the client allocates no value bytes.
type payload []byte

func newPayload(n int) payload {
	p := make(payload, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(p); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return p
}

// value returns the i-th record value of the given size.
func (p payload) value(i, size int) []byte {
	span := len(p) - size
	off := (i * 4099) % span
	return p[off : off+size]
}

func producerOpts(linger time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.LeaderAck()),
		kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(linger),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		// A produce request must fit kafkaguard's 1 MiB limit, as a Java
		// producer's max.request.size does.
		kgo.BrokerMaxWriteBytes(1 << 20),
		kgo.ProducerBatchMaxBytes(1_000_000),
		kgo.MaxBufferedBytes(32 << 20),
	}
}

// tputResult is one round of a throughput workload.
type tputResult struct {
	mibps float64
	bytes int64 // record value bytes moved
	errs  int64
}

// produceThroughput produces size-byte records with n producers (clients
// of their own) as fast as the path takes them for d (at most maxRecords in
// all) and returns acknowledged value MiB/s.
func produceThroughput(ctx context.Context, t target, p payload, size int, d time.Duration, maxRecords, n int) (tputResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cls := make([]*kgo.Client, 0, n)
	defer func() {
		for _, cl := range cls {
			cl.Close()
		}
	}()
	for range n {
		cl, err := kgo.NewClient(append(t.opts(), producerOpts(time.Millisecond)...)...)
		if err != nil {
			return tputResult{}, err
		}
		cls = append(cls, cl)
		// Warm up: metadata and connections before the clock starts.
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: p.value(0, size)}).FirstErr(); err != nil {
			return tputResult{}, fmt.Errorf("%s warm-up produce: %w", t.name, err)
		}
	}
	var acked, errs atomic.Int64
	var firstErr atomic.Value
	cb := func(r *kgo.Record, err error) {
		if err != nil {
			if errs.Add(1) == 1 {
				firstErr.Store(err)
			}
			return
		}
		acked.Add(int64(len(r.Value)))
	}
	start := time.Now()
	deadline := start.Add(d)
	flushErrs := make(chan error, n)
	for k, cl := range cls {
		go func() {
			for i := k; i < maxRecords; i += n {
				if (i/n)%32 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
					break
				}
				cl.Produce(ctx, &kgo.Record{Value: p.value(i, size)}, cb)
			}
			flushErrs <- cl.Flush(ctx)
		}()
	}
	var flushErr error
	for range n {
		if err := <-flushErrs; err != nil && flushErr == nil {
			flushErr = err
		}
	}
	if flushErr != nil {
		return tputResult{}, fmt.Errorf("%s flush: %w", t.name, flushErr)
	}
	el := time.Since(start).Seconds()
	res := tputResult{mibps: float64(acked.Load()) / el / (1 << 20), bytes: acked.Load(), errs: errs.Load()}
	if e, ok := firstErr.Load().(error); ok && acked.Load() == 0 {
		return res, fmt.Errorf("%s produce: %w", t.name, e)
	}
	return res, nil
}

// fetchThroughput consumes the topic from the start for d and returns
// record value MiB/s.
func fetchThroughput(ctx context.Context, t target, d time.Duration) (tputResult, error) {
	cl, err := kgo.NewClient(append(t.opts(),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return tputResult{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	// Warm up: the first fetch carries metadata, offsets and connects.
	var bytes int64
	for i := 0; i < 100 && bytes == 0; i++ {
		f := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return tputResult{}, fmt.Errorf("%s warm-up fetch: %w", t.name, err)
		}
		f.EachRecord(func(r *kgo.Record) { bytes += int64(len(r.Value)) })
	}
	if bytes == 0 {
		return tputResult{}, fmt.Errorf("%s: fetch returned no records", t.name)
	}
	bytes = 0
	var errs int64
	start := time.Now()
	deadline := start.Add(d)
	pctx, pcancel := context.WithDeadline(ctx, deadline)
	defer pcancel()
	for i := 0; i < 10_000_000 && time.Now().Before(deadline); i++ {
		f := cl.PollFetches(pctx)
		f.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				errs++
			}
		})
		f.EachRecord(func(r *kgo.Record) { bytes += int64(len(r.Value)) })
	}
	el := time.Since(start).Seconds()
	return tputResult{mibps: float64(bytes) / el / (1 << 20), bytes: bytes, errs: errs}, nil
}

// latencyResult is one run of the fixed-rate producer.
type latencyResult struct {
	samples []time.Duration // sorted; one per acknowledged record
	errs    int64
	behind  time.Duration // how late the last send was against its schedule
}

// produceLatency sends size-byte records at rate per second for d and
// returns each record's time from Produce to acknowledgement.
func produceLatency(ctx context.Context, t target, p payload, size, rate int, d time.Duration) (latencyResult, error) {
	cl, err := kgo.NewClient(append(t.opts(), producerOpts(0)...)...)
	if err != nil {
		return latencyResult{}, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: p.value(0, size)}).FirstErr(); err != nil {
		return latencyResult{}, fmt.Errorf("%s warm-up produce: %w", t.name, err)
	}
	n := max(int(float64(rate)*d.Seconds()), 1)
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var behind time.Duration
	sent := 0
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		t0 := time.Now()
		behind = t0.Sub(due)
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Value: p.value(i, size)}, func(_ *kgo.Record, err error) {
			if err != nil {
				errs.Add(1)
				lat[i] = -1
			} else {
				lat[i] = time.Since(t0)
			}
			wg.Done()
		})
		sent++
	}
	cl.Flush(ctx)
	wg.Wait()
	out := lat[:0]
	for _, l := range lat[:sent] {
		if l > 0 {
			out = append(out, l)
		}
	}
	sortDurations(out)
	return latencyResult{samples: out, errs: errs.Load(), behind: behind}, nil
}

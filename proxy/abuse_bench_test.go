package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"
)

// Flood parameters: goroutines opening connections, and the banned source
// addresses they cycle through (each has its own ephemeral ports).
const (
	floodWorkers = 8
	floodSources = 32
	// baselineTrips is how many round trips the well-behaved client makes
	// without the flood, just before it.
	baselineTrips = 1000
	// tripEvery paces the well-behaved client, with and without the flood:
	// a client, not a second flood, and little CPU of its own in the figures.
	tripEvery = time.Millisecond
)

// BenchmarkFlood measures the accept path under a reconnect flood: banned
// addresses reconnect as fast as floodWorkers goroutines can, b.N times in
// all, while a well-behaved client from another address makes an ApiVersions
// round trip every tripEvery on its established connection through the same
// listener.
//
// Reported: refused/s; cpu_ns/refused, the process's user+system CPU over
// the flood divided by the refused connections (the flooding clients run in
// this process, so it includes their dial, read and close; the bare_accept
// sub-benchmark is the same flood against a listener that closes every
// connection with no gate, for comparison); the client's p50 and p99 round
// trip without and with the flood, and their ratios.
//
//	go test -run '^$' -bench Flood ./proxy/
func BenchmarkFlood(b *testing.B) {
	b.Run("gate", benchFloodGate)
	b.Run("bare_accept", benchFloodBare)
}

func benchFloodGate(b *testing.B) {
	srv, reg, addr := newFloodServer(b)
	sources := banSources(b, addr, srv.Gate())

	wb, err := dialFrom("127.0.0.30", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer wb.Close()
	rt := newRoundTripper(wb)
	for range 100 { // warm up: the upstream connection, the broker
		if _, err := rt.trip(); err != nil {
			b.Fatal(err)
		}
	}
	base := make([]time.Duration, 0, baselineTrips)
	tick := time.NewTicker(tripEvery)
	defer tick.Stop()
	for range baselineTrips {
		<-tick.C
		d, err := rt.trip()
		if err != nil {
			b.Fatal(err)
		}
		base = append(base, d)
	}

	refused0 := gathered(b, reg, "kafkaguard_connections_refused_total")
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	var during []time.Duration
	stop := make(chan struct{})
	tripErr := make(chan error, 1)
	go func() {
		defer close(tripErr)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			d, err := rt.trip()
			if err != nil {
				tripErr <- err
				return
			}
			during = append(during, d)
		}
	}()
	flood(b, addr, sources)
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	close(stop)
	if err := <-tripErr; err != nil {
		b.Fatalf("well-behaved client during the flood: %v", err)
	}
	refused := gathered(b, reg, "kafkaguard_connections_refused_total") - refused0
	if refused < float64(b.N) {
		b.Fatalf("%v connections refused of %d attempts: some were admitted", refused, b.N)
	}
	b.ReportMetric(refused/elapsed.Seconds(), "refused/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/refused, "cpu_ns/refused")
	if len(during) == 0 {
		return // too short a run to measure under the flood
	}
	p50b, p99b := percentile(base, 0.50), percentile(base, 0.99)
	p50f, p99f := percentile(during, 0.50), percentile(during, 0.99)
	b.ReportMetric(float64(p50b.Microseconds()), "p50_base_us")
	b.ReportMetric(float64(p99b.Microseconds()), "p99_base_us")
	b.ReportMetric(float64(p50f.Microseconds()), "p50_flood_us")
	b.ReportMetric(float64(p99f.Microseconds()), "p99_flood_us")
	b.ReportMetric(float64(p50f)/float64(p50b), "p50_ratio")
	b.ReportMetric(float64(p99f)/float64(p99b), "p99_ratio")
	b.ReportMetric(float64(len(during)), "trips_in_flood")
}

// benchFloodBare floods a listener that resets every connection at accept,
// as admit does for a refused one, but with no gate and no metric: the
// floor that the kernel, the accept loop and the flooding clients cost.
func benchFloodBare(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	defer func() { ln.Close(); wg.Wait() }()
	sources := make([]string, floodSources)
	for i := range sources {
		sources[i] = fmt.Sprintf("127.20.0.%d", i+1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	flood(b, ln.Addr().String(), sources)
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "refused/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu_ns/refused")
}

// newFloodServer runs kafkaguard in front of a one-broker kfake cluster with
// a gate that bans at the first offence, for an hour.
func newFloodServer(b *testing.B) (*Server, *prometheus.Registry, string) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cluster.Close)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	pool, err := limits.NewPool(limits.PoolOptions{ChunkBytes: 32 << 10, TotalBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	pol, err := limits.NewPolicy(limits.PolicyOptions{MaxRequestBytes: 1 << 20, MaxClientIDBytes: 256,
		MaxDrainBytes: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	gate := testGate(b, limits.GateOptions{
		OffencesBeforeBan: 1, BanMin: time.Hour, MaxConnsPerIP: 1000, RatePerSecond: 50, RateBurst: 50,
		OnBan: func(limits.Ban) { m.Banned() },
	})
	o := testOptions()
	o.Routes = []Route{{Listen: "127.0.0.1:0", Upstream: cluster.ListenAddrs()[0]}}
	o.Policy, o.Pool, o.Gate, o.Metrics, o.Logger = pol, pool, gate, m, zerolog.Nop()
	srv, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(); close(done) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return srv, reg, srv.Addrs()[0].String()
}

// banSources bans floodSources addresses, each with one 50 MiB declaration,
// and returns them.
func banSources(b *testing.B, addr string, gate *limits.Gate) []string {
	sources := make([]string, floodSources)
	for i := range sources {
		sources[i] = fmt.Sprintf("127.20.0.%d", i+1)
		c, err := dialFrom(sources[i], addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(seedDeclaration)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for err == nil {
			_, err = c.Read(make([]byte, 16))
		}
		c.Close()
	}
	if n := len(gate.Bans()); n != floodSources {
		b.Fatalf("%d sources banned, want %d", n, floodSources)
	}
	return sources
}

// flood opens b.N connections from the sources to addr with floodWorkers
// goroutines; each waits for the server to close its connection.
func flood(b *testing.B, addr string, sources []string) {
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range floodWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			dialers := make([]net.Dialer, len(sources))
			for i, s := range sources {
				dialers[i] = net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(s)}}
			}
			for k := w; next.Add(1) <= int64(b.N); k++ {
				c, err := dialers[k%len(dialers)].Dial("tcp", addr)
				if err != nil {
					if !errors.Is(err, syscall.ECONNRESET) {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					continue
				}
				// The server closes at once; reading its reset leaves no
				// TIME_WAIT on either side.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(buf); err == nil {
					failed.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d flood connections failed oddly; first: %v", n, b.N, firstErr.Load())
	}
}

// roundTripper times ApiVersions round trips on one connection.
type roundTripper struct {
	c    net.Conn
	req  []byte
	buf  []byte
	corr int32
}

func newRoundTripper(c net.Conn) *roundTripper {
	return &roundTripper{c: c, buf: make([]byte, 0, 4096)}
}

func (r *roundTripper) trip() (time.Duration, error) {
	r.corr++
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	r.req = kmsg.NewRequestFormatter(kmsg.FormatterClientID("well-behaved")).AppendRequest(r.req[:0], req, r.corr)
	r.c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := r.c.Write(r.req); err != nil {
		return 0, err
	}
	if err := readCorr(r.c, r.corr, r.buf); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// gathered sums a metric family's values.
func gathered(b *testing.B, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// percentile returns the q-th quantile of ds, which it sorts.
func percentile(ds []time.Duration, q float64) time.Duration {
	slices.Sort(ds)
	return ds[int(q*float64(len(ds)-1))]
}

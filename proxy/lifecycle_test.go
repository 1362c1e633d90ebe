package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/limits"
)

// Tests of how connections end when the broker misbehaves: it never
// answers, answers hugely, or closes; and of Shutdown in each case. The
// brokers here are a few lines of Go on 127.0.0.1:0, not kfake, because
// kfake always answers promptly.

// scriptedBroker reads each request frame and does what its reply says.
type scriptedBroker struct {
	*testBroker
	got chan struct{} // a token per request frame read (buffered)
}

// brokerReply says what a scriptedBroker does with one request: the response
// to write (nil: none), and whether to close the connection after it.
type brokerReply func(key int16, corr int32) (resp []byte, closeAfter bool)

func newScriptedBroker(t testing.TB, reply brokerReply) *scriptedBroker {
	t.Helper()
	b := &scriptedBroker{got: make(chan struct{}, 64)}
	b.testBroker = listenBroker(t, func(c net.Conn) { b.serve(c, reply) })
	return b
}

func (b *scriptedBroker) serve(c net.Conn, reply brokerReply) {
	defer c.Close()
	var hdr [12]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		size := int64(binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.CopyN(io.Discard, c, size-8); err != nil {
			return
		}
		select {
		case b.got <- struct{}{}:
		default:
		}
		resp, closeAfter := reply(int16(binary.BigEndian.Uint16(hdr[4:])), int32(binary.BigEndian.Uint32(hdr[8:])))
		if resp != nil {
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
		if closeAfter {
			return
		}
	}
}

// waitRequest waits until the broker has read a request frame.
func (b *scriptedBroker) waitRequest(t *testing.T) {
	t.Helper()
	select {
	case <-b.got:
	case <-time.After(5 * time.Second):
		t.Fatal("the broker never received the request")
	}
}

// neverAnswers reads requests and never replies.
func neverAnswers(int16, int32) ([]byte, bool) { return nil, false }

// response builds a response frame of total bytes (size prefix included)
// with correlation id corr and a zero body.
func response(corr int32, total int) []byte {
	b := make([]byte, total)
	binary.BigEndian.PutUint32(b, uint32(total-4))
	binary.BigEndian.PutUint32(b[4:], uint32(corr))
	return b
}

// responseMode is one way a response larger than a chunk is relayed: on
// Linux through a pipe of the server's set in one splice loop
// (relayPiped), or copied through a chunk (relayLarge: a TLS side, no
// pipe to be had, or not Linux).
type responseMode struct {
	name string
	copy bool
}

var responseModes = []responseMode{{"pipe", false}, {"chunk copy", true}}

// lifecycleServer runs a Server with one route to upstream. Its cleanup
// shuts it down but gives up (failing the test) rather than hang.
func lifecycleServer(t testing.TB, upstream string, mutate func(*Options)) (*Server, *prometheus.Registry, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	pool, err := limits.NewPool(limits.PoolOptions{ChunkBytes: 32 << 10, TotalBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := limits.NewPolicy(limits.PolicyOptions{MaxRequestBytes: 1 << 20, MaxClientIDBytes: 256, MaxDrainBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	o.Routes = []Route{{Listen: "127.0.0.1:0", Upstream: upstream}}
	o.Policy, o.Pool, o.Metrics = pol, pool, NewMetrics(reg)
	o.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if mutate != nil {
		mutate(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { s.Serve(); close(served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() { s.Shutdown(ctx); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Shutdown did not return 3s after its deadline")
			return
		}
		select {
		case <-served:
		case <-time.After(time.Second):
			t.Error("Serve did not return after Shutdown")
		}
		if n := pool.InUse(); n != 0 {
			t.Errorf("pool holds %d bytes after shutdown", n)
		}
	})
	return s, reg, s.Addrs()[0].String()
}

// frameUnderway reports whether a connection is reading a frame.
func (s *Server) frameUnderway() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.frameBusy.Load() {
			return true
		}
	}
	return false
}

func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	h := &harness{t: t, reg: reg}
	return h.counter(name, labels)
}

// heartbeat is a request frame kafkaguard forwards without rewriting its
// response (the body is not parsed).
func heartbeat(corr int32) []byte { return rawRequest(12, 0, corr, "lifecycle", make([]byte, 12)) }

// Shutdown returns within its deadline plus a little whatever the broker or
// the client does: the connections left are closed, nothing deadlocks.
func TestShutdownDeadlineWhateverThePeers(t *testing.T) {
	const deadline = 300 * time.Millisecond
	cases := []struct {
		name  string
		setup func(t *testing.T) (upstream string, mutate func(*Options), send []byte, wait func(*testing.T, *Server))
	}{
		{"broker never answers", func(t *testing.T) (string, func(*Options), []byte, func(*testing.T, *Server)) {
			b := newScriptedBroker(t, neverAnswers)
			return b.addr(), nil, heartbeat(1), func(t *testing.T, _ *Server) { b.waitRequest(t) }
		}},
		{"upstream dial never completes", func(t *testing.T) (string, func(*Options), []byte, func(*testing.T, *Server)) {
			dialing := make(chan struct{}, 1)
			mutate := func(o *Options) {
				o.DialTimeout = time.Minute
				o.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
					dialing <- struct{}{}
					<-ctx.Done()
					return nil, ctx.Err()
				}
			}
			wait := func(t *testing.T, _ *Server) {
				select {
				case <-dialing:
				case <-time.After(5 * time.Second):
					t.Fatal("no dial")
				}
			}
			return closedAddr(t), mutate, heartbeat(1), wait
		}},
		{"client never finishes its frame", func(t *testing.T) (string, func(*Options), []byte, func(*testing.T, *Server)) {
			b := newScriptedBroker(t, neverAnswers)
			return b.addr(), nil, heartbeat(1)[:10], func(t *testing.T, s *Server) {
				// Read, not only sent: a drain before the frame's first
				// byte is read ends the connection cleanly at once.
				waitFor(t, 5*time.Second, "the frame under way", func() bool { return s.frameUnderway() })
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upstream, mutate, send, wait := tc.setup(t)
			s, reg, addr := lifecycleServer(t, upstream, mutate)
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(send); err != nil {
				t.Fatal(err)
			}
			wait(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			errc := make(chan error, 1)
			go func() { errc <- s.Shutdown(ctx) }()
			select {
			case err := <-errc:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown = %v, want the context's deadline error", err)
				}
			case <-time.After(deadline + time.Second):
				t.Fatalf("Shutdown still running %v after a %v deadline", time.Since(start).Round(time.Millisecond), deadline)
			}
			expectClosed(t, c, time.Second)
			if n := gauge(t, reg, "kafkaguard_connections_active", nil); n != 0 {
				t.Errorf("connections_active = %v after Shutdown", n)
			}
		})
	}
}

// A broker that owes a response longer than timeouts.request gets the
// connection closed as request_timeout, counted against the broker, not as
// an offence of the client.
func TestRequestTimeoutClosesConnection(t *testing.T) {
	b := newScriptedBroker(t, neverAnswers)
	s, reg, addr := lifecycleServer(t, b.addr(), func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.Write(heartbeat(1))
	b.waitRequest(t)
	expectClosed(t, c, 3*time.Second)
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("closed after %v, before the request timeout", el)
	}
	waitFor(t, 2*time.Second, "connection forgotten", func() bool { return s.connCount() == 0 })
	if got := gauge(t, reg, "kafkaguard_upstream_closes_total", map[string]string{"reason": reasonRequestTimeout.String()}); got != 1 {
		t.Errorf("upstream_closes_total{reason=request_timeout} = %v, want 1", got)
	}
	if got := gauge(t, reg, "kafkaguard_frames_rejected_total", nil); got != 0 {
		t.Errorf("frames_rejected_total = %v: a broker's timeout is not the client's offence", got)
	}
}

// A broker that goes silent in the middle of a large response is cut as
// request_timeout, the broker's fault, even with a write timeout shorter
// than the request timeout: the client's write deadline has passed by the
// time the read times out, yet the client read all it was sent.
func TestSilentBrokerMidResponse(t *testing.T) {
	for _, m := range responseModes {
		t.Run(m.name, func(t *testing.T) { testSilentBrokerMidResponse(t, m) })
	}
}

func testSilentBrokerMidResponse(t *testing.T, m responseMode) {
	const requestTimeout = 500 * time.Millisecond
	b := newScriptedBroker(t, func(_ int16, corr int32) ([]byte, bool) {
		return response(corr, 4<<20)[:100<<10], false // then nothing more
	})
	s, reg, addr := lifecycleServer(t, b.addr(), func(o *Options) {
		o.WriteTimeout = requestTimeout / 2
		o.RequestTimeout = requestTimeout
		o.responseCopy = m.copy
	})
	c := dial(t, addr)
	c.Write(rawRequest(1, 4, 3, "silent", make([]byte, 32))) // Fetch: relayed, not rewritten
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c) // a prompt reader
	t.Logf("closed %v after the request, %d bytes read: %v", time.Since(start).Round(time.Millisecond), n, err)
	if isTimeout(err) {
		t.Fatal("the connection was not closed")
	}
	if n != 100<<10 {
		t.Errorf("read %d bytes, want the %d the broker sent", n, 100<<10)
	}
	waitFor(t, 2*time.Second, "connection forgotten", func() bool { return s.connCount() == 0 })
	if got := gauge(t, reg, "kafkaguard_upstream_closes_total", map[string]string{"reason": reasonRequestTimeout.String()}); got != 1 {
		t.Errorf("upstream_closes_total{reason=request_timeout} = %v, want 1", got)
	}
}

// TestSlowBrokerMidResponseIsServed has the broker pause inside a large
// response for longer than timeouts.write (shorter than timeouts.request),
// twice, while the client reads promptly: the response arrives whole and
// nobody is cut. The client's clock for a step starts again when a read
// had to wait for the broker, so the broker's pause is not the client's.
func TestSlowBrokerMidResponseIsServed(t *testing.T) {
	// A second's write timeout: the client, a goroutine of this process,
	// reads promptly, but a busy machine (the race detector, other test
	// binaries) can hold it off for some hundreds of milliseconds.
	const (
		writeTimeout = time.Second
		pause        = writeTimeout + writeTimeout/4
		total        = 2 << 20
	)
	for _, m := range responseModes {
		t.Run(m.name, func(t *testing.T) {
			resp := response(1, total)
			b := listenBroker(t, func(c net.Conn) {
				defer c.Close()
				var hdr [12]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:]))-8); err != nil {
					return
				}
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				for i, part := range [][]byte{resp[:100<<10], resp[100<<10 : 400<<10], resp[400<<10:]} {
					if i > 0 {
						time.Sleep(pause)
					}
					if _, err := c.Write(part); err != nil {
						return
					}
				}
				io.Copy(io.Discard, c) // until the proxy closes
			})
			s, reg, addr := lifecycleServer(t, b.addr(), func(o *Options) {
				o.WriteTimeout = writeTimeout
				o.RequestTimeout = 5 * pause
				o.responseCopy = m.copy
			})
			c := dial(t, addr)
			c.Write(rawRequest(1, 4, 1, "paused", make([]byte, 32))) // Fetch: relayed, not rewritten
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.CopyN(io.Discard, c, total)
			if err != nil {
				t.Fatalf("read %d of %d bytes: %v", n, total, err)
			}
			if s.connCount() != 1 {
				t.Error("the connection was closed")
			}
			if n := gauge(t, reg, "kafkaguard_connections_closed_total", nil); n != 0 {
				t.Errorf("connections_closed_total = %v, want 0", n)
			}
		})
	}
}

// A broker that stops reading requests gets the client's connection closed
// once a write to it makes no progress for timeouts.write, counted in
// kafkaguard_upstream_closes_total as upstream_error.
func TestUpstreamWriteFailureCounted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { // accepts one connection and never reads it
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	defer func() {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	}()
	s, reg, addr := lifecycleServer(t, ln.Addr().String(), func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { // more than the kernel buffers both ways hold
		frame := rawRequest(12, 0, 1, "unread", make([]byte, 900<<10))
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for i := range 32 {
			binary.BigEndian.PutUint32(frame[8:], uint32(i))
			if _, err := c.Write(frame); err != nil {
				return
			}
		}
	}()
	expectClosed(t, c, 10*time.Second)
	waitFor(t, 2*time.Second, "connection forgotten", func() bool { return s.connCount() == 0 })
	if got := gauge(t, reg, "kafkaguard_upstream_closes_total", map[string]string{"reason": reasonUpstreamError.String()}); got != 1 {
		t.Errorf("upstream_closes_total{reason=upstream_error} = %v, want 1", got)
	}
}

// A broker that closes a connection on which nothing is owed gets the
// client's connection closed promptly, so the client reconnects at once
// instead of failing its next request; a broker that stays open does not.
func TestBrokerCloseNoticedPromptly(t *testing.T) {
	cases := []struct {
		name       string
		closeAfter time.Duration // after the response; <0: never
	}{
		{"closes right after answering", 0},
		{"closes once the pump is gone", 2 * pumpLinger},
		{"stays open", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newScriptedBroker(t, func(_ int16, corr int32) ([]byte, bool) {
				return response(corr, 10), tc.closeAfter == 0
			})
			s, reg, addr := lifecycleServer(t, b.addr(), nil)
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(heartbeat(7))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := readCorr(c, 7, make([]byte, 64)); err != nil {
				t.Fatalf("response: %v", err)
			}
			if tc.closeAfter > 0 {
				time.Sleep(tc.closeAfter)
				b.Close()
			}
			if tc.closeAfter < 0 {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
					t.Fatalf("idle connection to a live broker ended: %v", err)
				}
				if s.connCount() != 1 {
					t.Errorf("%d connections, want 1", s.connCount())
				}
				return
			}
			start := time.Now()
			expectClosed(t, c, 3*time.Second)
			t.Logf("client closed %v after the broker", time.Since(start).Round(time.Millisecond))
			waitFor(t, 2*time.Second, "connection forgotten", func() bool { return s.connCount() == 0 })
			if got := gauge(t, reg, "kafkaguard_upstream_closes_total", map[string]string{"reason": reasonUpstreamClosed.String()}); got != 1 {
				t.Errorf("upstream_closes_total{reason=upstream_closed} = %v, want 1", got)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The write timeout measures a lack of progress, not a whole response: a
// consumer that reads a large response steadily but slowly receives all of
// it, though it takes several times timeouts.write; one that stops reading
// is cut after about timeouts.write.
//
// Each splice step of 256 KiB has its own timeouts.write (see spliceStep),
// so a reader must take that much per timeout. The reader here takes about
// 7 MB/s with a 500ms timeout, and the response is bigger than the kernel
// buffers (up to 4 MiB autotuned on loopback) plus a timeout's worth, so a
// whole-response deadline would cut it. TestTrickleReaderCut is the other
// side: a reader under a step per timeout is cut.
func TestWriteTimeoutMeasuresProgress(t *testing.T) {
	for _, m := range responseModes {
		t.Run(m.name, func(t *testing.T) { testWriteTimeoutMeasuresProgress(t, m) })
	}
}

func testWriteTimeoutMeasuresProgress(t *testing.T, m responseMode) {
	const (
		// A 256 KiB splice step takes the reader about 80 ms: 25 times
		// within timeouts.write, so a machine busy with other work can
		// slow the reader a lot before the test stops testing progress.
		writeTimeout = 2 * time.Second
		total        = 16 << 20
		step         = 32 << 10              // read this much ...
		pause        = 10 * time.Millisecond // ... then pause this long
	)
	b := newScriptedBroker(t, func(_ int16, corr int32) ([]byte, bool) {
		if corr == 4 {
			return response(corr, 100), false
		}
		return response(corr, total), false
	})
	// A request timeout shorter than the slow read: the response queued
	// behind the large one arrives in time but is read late, through no
	// fault of the broker, and must not be judged overdue.
	s, reg, addr := lifecycleServer(t, b.addr(), func(o *Options) {
		o.WriteTimeout = writeTimeout
		o.RequestTimeout = writeTimeout
		o.responseCopy = m.copy
	})

	t.Run("slow steady reader", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(step)
		c.Write(append(rawRequest(1, 4, 3, "slow", make([]byte, 32)), // Fetch: relayed, not rewritten
			rawRequest(1, 4, 4, "slow", make([]byte, 32))...))
		start := time.Now()
		buf := make([]byte, step)
		got := 0
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		for got < total {
			n, err := io.ReadFull(c, buf[:min(step, total-got)])
			got += n
			if err != nil {
				t.Fatalf("read %d of %d bytes in %v: %v", got, total, time.Since(start).Round(time.Millisecond), err)
			}
			time.Sleep(pause)
		}
		if err := readCorr(c, 4, make([]byte, 128)); err != nil {
			t.Fatalf("the response pipelined behind the large one: %v", err)
		}
		el := time.Since(start)
		if n := gauge(t, reg, "kafkaguard_upstream_closes_total", nil); n != 0 {
			t.Errorf("upstream_closes_total = %v, want 0", n)
		}
		t.Logf("%d MiB read in %v (%.1f MB/s); timeouts.write %v", total>>20, el.Round(time.Millisecond),
			float64(total)/el.Seconds()/1e6, writeTimeout)
		if el < 2*writeTimeout {
			t.Errorf("read in %v: too fast to test anything", el)
		}
	})

	t.Run("reader that stops", func(t *testing.T) {
		waitFor(t, 2*time.Second, "the previous connection gone", func() bool { return s.connCount() == 0 })
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(step)
		c.Write(rawRequest(1, 4, 3, "stalled", make([]byte, 32)))
		waitFor(t, 2*time.Second, "connection open", func() bool { return s.connCount() == 1 })
		start := time.Now()
		waitFor(t, 4*writeTimeout+2*time.Second, "stalled reader cut", func() bool { return s.connCount() == 0 })
		t.Logf("cut %v after the request", time.Since(start).Round(time.Millisecond))
	})
}

// A client that keeps taking a little of a response that sits whole in a
// pool chunk, steadily but less than a splice step (256 KiB) per
// timeouts.write, is cut within about two timeouts.write: each write step
// must complete by its own deadline. Were every write that moved a byte
// granted a fresh timeout, such a reader (here about 160 KB/s; in the field
// a segment every 29 s) would pin the chunk for as long as it liked.
//
// The kernel reports a blocked write's progress only once about a third of
// the send buffer has drained, and a receive window opens only by whole
// segments (64 KiB on loopback), so the test fixes the client's receive
// buffer and segment size before it connects and the proxy's send buffer
// once it has accepted: every bite the reader takes is then progress the
// proxy sees.
func TestTrickleReaderCut(t *testing.T) {
	const (
		writeTimeout = 400 * time.Millisecond
		chunk        = 1 << 20
		total        = chunk - 1024 // relayed from the chunk, not spliced
		bite         = 8 << 10
		pause        = 50 * time.Millisecond
	)
	b := newScriptedBroker(t, func(_ int16, corr int32) ([]byte, bool) { return response(corr, total), false })
	pool, err := limits.NewPool(limits.PoolOptions{ChunkBytes: chunk, TotalBytes: 4 * chunk})
	if err != nil {
		t.Fatal(err)
	}
	s, reg, addr := lifecycleServer(t, b.addr(), func(o *Options) {
		o.WriteTimeout = writeTimeout
		o.Pool = pool
	})
	c := dialSlowReader(t, s, addr, 2*bite, bite/2)
	c.Write(rawRequest(1, 4, 3, "trickle", make([]byte, 32))) // Fetch: relayed, not rewritten
	b.waitRequest(t)
	start := time.Now()
	read := make(chan int, 1)
	go func() { // a bite every pause until the connection ends
		buf := make([]byte, bite)
		got := 0
		for {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.ReadFull(c, buf)
			got += n
			if err != nil {
				read <- got
				return
			}
			time.Sleep(pause)
		}
	}()
	waitFor(t, 2*writeTimeout+time.Second, "trickle reader cut", func() bool { return s.connCount() == 0 })
	t.Logf("cut %v after the request; the client read %d bytes", time.Since(start).Round(time.Millisecond), <-read)
	if n := gauge(t, reg, "kafkaguard_upstream_closes_total", nil); n != 0 {
		t.Errorf("upstream_closes_total = %v: a slow client is not the broker's fault", n)
	}
	waitFor(t, time.Second, "chunk returned", func() bool { return pool.InUse() == 0 })
}

// BenchmarkIdleConnections measures what an idle connection costs once its
// upstream is dialled and its response pump has ended: goroutines and heap
// plus stack bytes per connection, the in-process fake broker's side
// included (one goroutine and a small buffer per connection).
//
//	go test -run '^$' -bench IdleConnections -benchtime 1x ./proxy/
func BenchmarkIdleConnections(b *testing.B) {
	const n = 1000
	br := newScriptedBroker(b, func(_ int16, corr int32) ([]byte, bool) { return response(corr, 10), false })
	_, _, addr := lifecycleServer(b, br.addr(), nil)
	buf := make([]byte, 64)
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for i := range n {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				b.Fatalf("dial %d: %v", i, err)
			}
			conns = append(conns, c)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.Write(heartbeat(1))
			if err := readCorr(c, 1, buf); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(pumpLinger + 500*time.Millisecond) // every response pump ends
		runtime.GC()
		runtime.ReadMemStats(&after)
		g1 := runtime.NumGoroutine()
		mem := int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)
		b.ReportMetric(float64(mem)/n/1024, "KiB/conn")
		b.ReportMetric(float64(g1-g0)/n, "goroutines/conn")
		for _, c := range conns {
			c.Close()
		}
	}
}

// BenchmarkLargeResponse relays 16 MiB responses to a client that reads as
// fast as it can, each way a large response is relayed (responseModes):
// through a pipe of the server's in one splice loop, or copied through a
// chunk (the fallback). Client and broker run in this process too, so the
// gap between the two is diluted; the bench's fetch workload measures the
// proxy alone (and the README compares the loop with Go's splice).
//
//	go test -run '^$' -bench LargeResponse -count 5 ./proxy/
func BenchmarkLargeResponse(b *testing.B) {
	for _, m := range responseModes {
		b.Run(m.name, func(b *testing.B) { benchLargeResponse(b, m) })
	}
}

func benchLargeResponse(b *testing.B, m responseMode) {
	const total = 16 << 20
	resp := response(0, total)
	br := newScriptedBroker(b, func(_ int16, corr int32) ([]byte, bool) {
		binary.BigEndian.PutUint32(resp[4:], uint32(corr))
		return resp, false
	})
	_, _, addr := lifecycleServer(b, br.addr(), func(o *Options) { o.responseCopy = m.copy })
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	b.SetBytes(total)
	corr := int32(0)
	for b.Loop() {
		corr++
		if _, err := c.Write(rawRequest(1, 4, corr, "bench", make([]byte, 32))); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, c, total); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLargeResponsesThroughPipes relays large responses of random bytes
// to several readers at once, each way (see responseModes), and checks
// every byte arrives in order; through pipes, the pipes taken are the
// server's counted ones, settled once the responses end (emptied and kept,
// at most maxPipesFree), and a reader that stops mid-response is cut with
// its pipe, which still holds bytes, closed rather than kept.
func TestLargeResponsesThroughPipes(t *testing.T) {
	const (
		readers = 6
		total   = 3<<20 + 12345
	)
	body := make([]byte, total)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 8; i < total; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(body[i:], w[:])
	}
	for _, m := range responseModes {
		t.Run(m.name, func(t *testing.T) {
			b := newScriptedBroker(t, func(_ int16, corr int32) ([]byte, bool) {
				if corr == 1 { // to the reader that stops: more than the kernel buffers hold
					return response(corr, 16<<20), false
				}
				r := slices.Clone(body)
				binary.BigEndian.PutUint32(r, uint32(total-4))
				binary.BigEndian.PutUint32(r[4:], uint32(corr))
				return r, false
			})
			s, reg, addr := lifecycleServer(t, b.addr(), func(o *Options) {
				// Long enough that a reader held off by a busy machine is
				// not cut; the stalled reader below waits it out.
				o.WriteTimeout = 2 * time.Second
				o.responseCopy = m.copy
			})
			var wg sync.WaitGroup
			errs := make(chan error, readers)
			for i := range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- readLargeResponses(addr, int32(100+10*i), 3, body)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			waitFor(t, 2*time.Second, "the readers' connections gone", func() bool { return s.connCount() == 0 })
			open := s.pipes.open.Load()
			t.Logf("pipes open once the responses ended: %d", open)
			if n := s.pipes.unsettled(); n != 0 {
				t.Errorf("%d pipes unsettled once every response ended", n)
			}
			switch {
			case runtime.GOOS != "linux":
			case m.copy && open != 0:
				t.Errorf("%d pipes open: the copy path takes none of the server's", open)
			case !m.copy && (open == 0 || open > maxPipesFree):
				t.Errorf("%d pipes open after responses through pipes, want 1 to %d kept free", open, maxPipesFree)
			}

			// A reader that stops: cut by timeouts.write, its pipe closed.
			c := dialSlowReader(t, s, addr, 32<<10, 32<<10)           // so the kernel buffers hold far less than the response
			c.Write(rawRequest(1, 4, 1, "stalled", make([]byte, 32))) // Fetch: relayed, not rewritten
			waitFor(t, 10*time.Second, "stalled reader cut", func() bool {
				return gauge(t, reg, "kafkaguard_connections_closed_total", map[string]string{"reason": reasonClientError.String()}) == 1
			})
			waitFor(t, 2*time.Second, "connection forgotten", func() bool { return s.connCount() == 0 })
			if n := s.pipes.unsettled(); n != 0 {
				t.Errorf("%d pipes unsettled after the stalled reader was cut", n)
			}
			// Through a pipe, the stalled reader took one of the free ones
			// and left it holding bytes: closed, one fewer open.
			if got := s.pipes.open.Load(); runtime.GOOS == "linux" && !m.copy && got != open-1 {
				t.Errorf("%d pipes open after the stalled reader was cut, %d before: want its pipe closed", got, open)
			} else if m.copy && got != 0 {
				t.Errorf("%d pipes open through the copy", got)
			}
		})
	}
}

// readLargeResponses asks for n responses on one connection, in turn, and
// checks each is body with its correlation id.
func readLargeResponses(addr string, corr0 int32, n int, body []byte) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, len(body))
	for i := range int32(n) {
		corr := corr0 + i
		if _, err := c.Write(rawRequest(1, 4, corr, "large", make([]byte, 32))); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("response %d: %w", corr, err)
		}
		if c := int32(binary.BigEndian.Uint32(got[4:])); c != corr {
			return fmt.Errorf("response correlation id %d, want %d", c, corr)
		}
		if !bytes.Equal(got[8:], body[8:]) {
			return fmt.Errorf("response %d: bytes differ from the broker's", corr)
		}
	}
	return nil
}

package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/limits"
	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// storeModes are the ways a frame larger than a chunk is stored before the
// broker sees it: through a kernel pipe (Linux), a pipe too small for the
// frame so that the rest spills into chunks, chunks filled by readv as
// many at once as the socket holds bytes for (Linux), and chunks one Read
// each (the portable path, forced here on Linux too).
var storeModes = []storeMode{
	{"pipe", func(o *Options) { o.store = storePipe }, true},
	{"pipe-spill", func(o *Options) { o.store, o.pipeLimit = storePipe, 64<<10 }, true},
	{"readv", func(o *Options) { o.store = storeReadv }, false},
	{"chunks", func(o *Options) { o.store = storeChunks }, false},
}

// cutModes are the ways a frame larger than CutThroughBytes (here every
// frame larger than a chunk) goes to the broker as it arrives: its body
// through a kernel pipe, splice in and straight out (Linux), the same in
// steps of 16 KiB, smaller than what the socket holds at once, and chunk by
// chunk (the portable path).
var cutModes = []storeMode{
	{"cut-pipe", func(o *Options) { o.store, o.CutThroughBytes = storePipe, 1<<10 }, true},
	{"cut-pipe-small", func(o *Options) { o.store, o.pipeLimit, o.CutThroughBytes = storePipe, 16<<10, 1<<10 }, true},
	{"cut-chunks", func(o *Options) { o.store, o.CutThroughBytes = storeChunks, 1<<10 }, false},
}

type storeMode struct {
	name   string
	mutate func(*Options)
	piped  bool // on Linux, frames larger than a chunk take a pipe
}

// produceBroker is a fake broker answering every request with an empty
// Produce response, after handing the request's body to onBody when set.
func produceBroker(t *testing.T, onBody func(body []byte)) *fakeBroker {
	return newFakeBroker(t, func(key, version int16, body []byte) []byte {
		if onBody != nil {
			onBody(body)
		}
		return encodeResponse(kmsg.NewPtrProduceResponse(), version)
	})
}

// expectBody waits for the sum of the body the broker got and fails the
// test unless it is want.
func expectBody(t *testing.T, got <-chan [32]byte, want [32]byte) {
	t.Helper()
	select {
	case sum := <-got:
		if sum != want {
			t.Fatal("the frame reached the broker changed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the broker never got the frame")
	}
}

// dialHarness connects a client to h's first listener, closed when the
// test ends, with deadline d on every read and write.
func dialHarness(t *testing.T, h *harness, d time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(d))
	return c
}

// largeProduce is a Produce v3 frame (null transactional id, acks=1) of
// about size bytes whose records are random bytes.
func largeProduce(corr int32, size int, rng *rand.Rand) []byte {
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	binary.BigEndian.PutUint16(body, 0xffff)
	binary.BigEndian.PutUint16(body[2:], 1)
	return rawRequest(0, 3, corr, "big", body)
}

// TestLargeFramesArriveWhole sends pipelined Produce frames of sizes around
// and far beyond a chunk and checks the broker gets every byte of each, in
// order, whichever way they were stored or cut through, and that a pipe
// was or was not used as the mode says (one is left on the free list when
// it was; whether frames were cut or stored is
// TestCutThroughHoldsOnlyBytesInTransit's to tell).
func TestLargeFramesArriveWhole(t *testing.T) {
	for _, m := range append(storeModes[:len(storeModes):len(storeModes)], cutModes...) {
		t.Run(m.name, func(t *testing.T) {
			got := make(chan [32]byte, 16)
			b := produceBroker(t, func(body []byte) { got <- sha256.Sum256(body) })
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}, mutate: m.mutate})
			c := dialHarness(t, h, 20*time.Second)
			rng := rand.New(rand.NewPCG(1, 2))
			sizes := []int{40 << 10, 500 << 10, 1000 << 10, 33 << 10, 900 << 10}
			var want [][32]byte
			var all []byte
			for i, n := range sizes {
				f := largeProduce(int32(i+1), n, rng)
				want = append(want, sha256.Sum256(f[4+2+2+4+2+3:])) // the body after header "big"
				all = append(all, f...)
			}
			go func() { c.Write(all) }()
			for i := range sizes {
				var resp [8]byte
				if _, err := io.ReadFull(c, resp[:]); err != nil {
					t.Fatalf("response %d: %v", i, err)
				}
				if corr := binary.BigEndian.Uint32(resp[4:]); corr != uint32(i+1) {
					t.Fatalf("response %d has correlation id %d", i, corr)
				}
				if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(resp[:]))-4); err != nil {
					t.Fatal(err)
				}
				select {
				case sum := <-got:
					if sum != want[i] {
						t.Fatalf("frame %d (%d bytes) reached the broker changed", i, sizes[i])
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("broker never got frame %d", i)
				}
			}
			if n := h.srv.pipes.open.Load(); n > maxPipesFree {
				t.Errorf("%d pipes open with no frame under way, want at most %d", n, maxPipesFree)
			} else if piped := runtime.GOOS == "linux" && m.piped; (n > 0) != piped {
				t.Errorf("%d pipes open after the frames; want some: %v", n, piped)
			}
		})
	}
}

// TestCutThroughHoldsOnlyBytesInTransit sends part of a Produce larger than
// CutThroughBytes and checks, through a pipe or chunk by chunk, that every
// byte sent has reached the broker while the frame is unfinished and that
// the pool then holds the frame's first chunk and nothing for the bytes
// that passed; then the client hangs up mid-frame and everything is given
// back.
func TestCutThroughHoldsOnlyBytesInTransit(t *testing.T) {
	const (
		size  = 1000 << 10
		sent  = 300 << 10
		chunk = 32 << 10
	)
	for _, m := range cutModes {
		t.Run(m.name, func(t *testing.T) {
			b := newCountingBroker(t)
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr}, mutate: m.mutate})
			c := dialHarness(t, h, 20*time.Second)
			f := largeProduce(7, size, rand.New(rand.NewPCG(3, 4)))
			for i := 0; i < sent; i += 20 << 10 { // several arrivals, not one
				if _, err := c.Write(f[i : i+20<<10]); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond)
			}
			// Chunk by chunk, the last chunk goes once full; through a
			// pipe, every byte that arrived.
			want := int64(sent)
			if !m.piped || runtime.GOOS != "linux" {
				want = sent / chunk * chunk
			}
			waitFor(t, 5*time.Second, "the bytes sent to reach the broker", func() bool { return b.got.Load() == want })
			// The step's reservation is given back just after its bytes
			// leave: wait for it, then hold the pool to one chunk.
			waitFor(t, 5*time.Second, "the pool to hold the first chunk only", func() bool { return h.pool.InUse() <= chunk })
			time.Sleep(50 * time.Millisecond)
			if in := h.pool.InUse(); in > chunk {
				t.Errorf("pool holds %d bytes for a frame cut through with %d of its bytes sent on", in, sent)
			}
			c.Close()
			waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
			waitFor(t, 5*time.Second, "the close to be counted as truncated", func() bool {
				return h.counter("kafkaguard_connections_closed_total", map[string]string{"reason": "truncated"}) == 1
			})
		})
	}
}

// countingBroker accepts connections and counts the bytes they send,
// answering nothing; stalled, it reads nothing at all.
type countingBroker struct {
	addr  string
	got   atomic.Int64
	stall bool
}

func newCountingBroker(t *testing.T) *countingBroker {
	return newBroker(t, false)
}

func newBroker(t *testing.T, stall bool) *countingBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &countingBroker{addr: ln.Addr().String(), stall: stall}
	var conns sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close(); conns.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				if b.stall {
					<-done
					return
				}
				buf := make([]byte, 64<<10)
				for {
					c.SetReadDeadline(time.Now().Add(20 * time.Second))
					n, err := c.Read(buf)
					b.got.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return b
}

// TestStoredFrameHoldsBudgetOfItsBytes sends part of a large Produce and
// checks, whichever way it is stored, that the broker has not been dialled
// (its length prefix has not left kafkaguard) and that the pool counts the
// bytes that arrived, not the size declared; then the rest, and the frame
// goes through and everything is given back.
func TestStoredFrameHoldsBudgetOfItsBytes(t *testing.T) {
	const (
		size  = 1000 << 10
		sent  = 300 << 10
		chunk = 32 << 10
	)
	for _, m := range storeModes {
		t.Run(m.name, func(t *testing.T) {
			got := make(chan int, 1)
			b := produceBroker(t, func(body []byte) { got <- len(body) })
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}, mutate: m.mutate})
			c := dialHarness(t, h, 20*time.Second)
			f := largeProduce(7, size, rand.New(rand.NewPCG(3, 4)))
			if _, err := c.Write(f[:sent]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the bytes sent to be held", func() bool { return h.pool.InUse() >= sent })
			time.Sleep(50 * time.Millisecond) // anything more it would take
			if in := h.pool.InUse(); in > sent+3*chunk {
				t.Errorf("pool holds %d bytes for %d bytes of a %d-byte frame", in, sent, len(f))
			}
			if n := h.dials.Load(); n != 0 {
				t.Fatalf("broker dialled before the frame was whole")
			}
			if _, err := c.Write(f[sent:]); err != nil {
				t.Fatal(err)
			}
			select {
			case n := <-got:
				if n != len(f)-17 {
					t.Fatalf("broker got a body of %d bytes, want %d", n, len(f)-17)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the frame never reached the broker")
			}
			var resp [8]byte
			if _, err := io.ReadFull(c, resp[:]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
		})
	}
}

// TestPipesClosedWithConnections cuts frames short mid-body on many
// connections at once (each leaves a pipe holding bytes) and checks every
// pipe is counted, the count stays within its bound, a pipe left with bytes
// in it is closed rather than reused, and none is open after Shutdown: no
// fd leaks.
func TestPipesClosedWithConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pipes are Linux only")
	}
	const conns = 40
	b := produceBroker(t, nil)
	h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}})
	fdsBefore := openFDs(t)
	f := largeProduce(1, 800<<10, rand.New(rand.NewPCG(5, 6)))
	var cs []net.Conn
	for range conns {
		c, err := net.Dial("tcp", h.addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(f[:200<<10]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "every frame to take a pipe", func() bool { return h.srv.pipes.open.Load() == conns })
	if n := openFDs(t) - fdsBefore; n < 2*conns {
		t.Errorf("%d more fds open with %d pipes in use, want at least %d", n, conns, 2*conns)
	}
	for _, c := range cs {
		c.Close() // truncated: each pipe still holds 200 KiB less the head
	}
	waitFor(t, 5*time.Second, "cut pipes to be closed", func() bool { return h.srv.pipes.open.Load() == 0 })

	// A whole frame leaves its emptied pipe on the free list for the next.
	c := dialHarness(t, h, 10*time.Second)
	if _, err := c.Write(f); err != nil {
		t.Fatal(err)
	}
	var resp [8]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.pipes.open.Load(); n != 1 {
		t.Errorf("%d pipes open after one whole frame, want 1 (kept free)", n)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.pipes.open.Load(); n != 0 {
		t.Errorf("%d pipes open after Shutdown", n)
	}
	// The broker's ends close as it reads their EOF; the tests of this
	// package that count fds do not run in parallel.
	waitFor(t, 5*time.Second, "fds to be back to their count before the frames", func() bool {
		return openFDs(t) <= fdsBefore
	})
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	d, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(d)
}

// TestLargeFramesToATLSBroker sends large frames from a plaintext client
// to a TLS broker, stored whole and cut through. A connection's first
// frame may take a pipe (the broker's socket is judged once dialled) and
// is drained through a chunk into the TLS session; once the broker is
// known to speak TLS, frames go through chunks.
func TestLargeFramesToATLSBroker(t *testing.T) {
	for _, m := range []storeMode{storeModes[0], cutModes[0]} {
		t.Run(m.name, func(t *testing.T) {
			certs := tlstest.New(t)
			h := newHarness(t, harnessOpts{
				kfakeOpts: []kfake.Opt{kfake.TLS(certs.ServerConfig())},
				mutate: func(o *Options) {
					m.mutate(o)
					o.TLSHandshakeTimeout = 5 * time.Second
					for i := range o.Routes {
						up, err := NewUpstreamTLS(UpstreamTLSFiles{CAFile: certs.CAFile, ServerName: "127.0.0.1"}, TLSFileOptions{Listener: "test"})
						if err != nil {
							t.Fatal(err)
						}
						o.Routes[i].UpstreamTLS = up
					}
				},
			})
			c := dialHarness(t, h, 20*time.Second)
			if _, err := c.Write(largeProduce(1, 900<<10, rand.New(rand.NewPCG(7, 8)))); err != nil {
				t.Fatal(err)
			}
			var resp [8]byte // kfake answers only a frame that arrived whole
			if _, err := io.ReadFull(c, resp[:]); err != nil {
				t.Fatal(err)
			}
			if corr := binary.BigEndian.Uint32(resp[4:]); corr != 1 {
				t.Fatalf("response has correlation id %d, want 1", corr)
			}
			if piped := runtime.GOOS == "linux"; (h.srv.pipes.open.Load() > 0) != piped {
				t.Errorf("%d pipes open after the first frame; want some: %v", h.srv.pipes.open.Load(), piped)
			}
			produceConsume(t, h, "large", 5, 900<<10)
		})
	}
}

// TestCutThroughBudget holds frames cut through to CutThroughBudget: with
// room for one 1000 KiB frame, a first is cut through (its bytes reach the
// broker as they arrive) while a second, on another connection, is stored
// (the broker is not dialled for it until it is whole); the budget is given
// back as each frame ends, cut short or written whole.
func TestCutThroughBudget(t *testing.T) {
	const (
		size = 1000 << 10
		sent = 300 << 10
	)
	for _, m := range cutModes {
		t.Run(m.name, func(t *testing.T) {
			b := newCountingBroker(t)
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr}, mutate: func(o *Options) {
				m.mutate(o)
				o.CutThroughBudget = 1500 << 10
			}})
			f := largeProduce(7, size, rand.New(rand.NewPCG(3, 4)))
			binary.BigEndian.PutUint16(f[17+2:], 0) // acks=0: the broker here never answers
			first := dialHarness(t, h, 20*time.Second)
			if _, err := first.Write(f[:sent]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the first frame's bytes to reach the broker", func() bool { return b.got.Load() >= sent-32<<10 })
			if owed := h.srv.cutOwed.Load(); owed != int64(len(f)) {
				t.Errorf("budget owed %d with one frame cut through, want %d", owed, len(f))
			}
			second := dialHarness(t, h, 20*time.Second)
			if _, err := second.Write(f[:sent]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the second frame to be held", func() bool { return h.pool.InUse() >= sent })
			if n := h.counter("kafkaguard_cut_through_over_budget_total", nil); n != 1 {
				t.Errorf("cut_through_over_budget = %v, want 1", n)
			}
			if n := h.counter("kafkaguard_cut_through_frames_total", nil); n != 1 {
				t.Errorf("cut_through_frames = %v, want 1 (the first frame)", n)
			}
			if n := h.dials.Load(); n != 1 {
				t.Fatalf("%d broker dials: the frame over the budget reached the broker before it was whole", n)
			}
			if _, err := second.Write(f[sent:]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the stored frame to reach the broker", func() bool { return h.dials.Load() == 2 })
			first.Close()
			waitFor(t, 5*time.Second, "the budget to be given back", func() bool { return h.srv.cutOwed.Load() == 0 })

			// With the budget free, a frame is cut through again.
			third := dialHarness(t, h, 20*time.Second)
			before := b.got.Load()
			if _, err := third.Write(f[:sent]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the third frame's bytes to reach the broker", func() bool { return b.got.Load()-before >= sent-32<<10 })
			if n := h.counter("kafkaguard_cut_through_frames_total", nil); n != 2 {
				t.Errorf("cut_through_frames = %v, want 2 (the first and the third frame)", n)
			}
			if _, err := third.Write(f[sent:]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the budget to be given back", func() bool { return h.srv.cutOwed.Load() == 0 })
		})
	}
}

// TestCutThroughBrokerStalls has the broker stop reading while a frame is
// cut through to it: the write to it times out (timeouts.write), the
// connection ends as upstream_error (the broker's fault, no offence), the
// pool is given back, and the pipe, when it was left holding bytes the
// broker never took (the time-out fell in a pipe's step, not in a write
// through the first chunk), is closed rather than kept for the next frame.
func TestCutThroughBrokerStalls(t *testing.T) {
	for _, m := range cutModes {
		t.Run(m.name, func(t *testing.T) {
			b := newBroker(t, true)
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr}, mutate: func(o *Options) {
				m.mutate(o)
				o.WriteTimeout = 300 * time.Millisecond
			}})
			c := dialHarness(t, h, 20*time.Second)
			f := largeProduce(7, 1000<<10, rand.New(rand.NewPCG(3, 4)))
			binary.BigEndian.PutUint16(f[17+2:], 0) // acks=0: nothing owed when it ends
			go func() {                             // more than the sockets between here and the broker hold
				for range 40 {
					if _, err := c.Write(f); err != nil {
						return
					}
				}
			}()
			expectClosed(t, c, 10*time.Second)
			waitFor(t, 5*time.Second, "the close to be counted as upstream_error", func() bool {
				return h.counter("kafkaguard_connections_closed_total", map[string]string{"reason": "upstream_error"}) == 1
			})
			waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
			waitFor(t, 5*time.Second, "no pipe but empty free ones to be open", func() bool { return h.srv.pipes.unsettled() == 0 })
		})
	}
}

// TestSlowCutFrameIsEvicted leaves a frame cut through a pipe unfinished
// past evictStale, holding its first chunk, the whole pool, while another
// client's frame needs a chunk: the slow one is evicted (slow_frame),
// having stayed evictable across the steps it sent on to the broker, and
// the other's frame goes through.
func TestSlowCutFrameIsEvicted(t *testing.T) {
	const chunk = 4 << 10
	for _, m := range cutModes {
		if !m.piped || runtime.GOOS != "linux" {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			b := produceBroker(t, nil)
			h := newHarness(t, harnessOpts{
				upstreams: []string{b.addr()},
				pool:      limits.PoolOptions{ChunkBytes: chunk, TotalBytes: chunk},
				mutate:    m.mutate,
			})
			rng := rand.New(rand.NewPCG(9, 10))
			slow := dialHarness(t, h, 20*time.Second)
			f := largeProduce(1, 100<<10, rng)
			for i := 0; i < 20<<10; i += 2 << 10 { // steps on to the broker, each in the first chunk's room
				if _, err := slow.Write(f[i : i+2<<10]); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			waitFor(t, 5*time.Second, "the slow frame to hold its first chunk only", func() bool { return h.pool.InUse() == chunk })
			time.Sleep(evictStale + 100*time.Millisecond)

			expectSlowEvicted(t, h, slow, rng)
		})
	}
}

// TestCutFrameWithPausesArrives has a client pause twice, each time for
// longer than timeouts.write, inside a frame cut through (well within
// timeouts.frame), while the broker reads promptly: the frame arrives
// whole and nobody is cut: each step written to the broker has its own
// write deadline, so the client's pause is not the broker's.
func TestCutFrameWithPausesArrives(t *testing.T) {
	// A second's write timeout: the broker, a goroutine of this process,
	// reads promptly, but a busy machine (the race detector, other test
	// binaries) can hold it off for some hundreds of milliseconds.
	const (
		writeTimeout = time.Second
		pause        = writeTimeout + writeTimeout/4
	)
	for _, m := range cutModes {
		t.Run(m.name, func(t *testing.T) {
			got := make(chan [32]byte, 1)
			b := produceBroker(t, func(body []byte) { got <- sha256.Sum256(body) })
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}, mutate: func(o *Options) {
				m.mutate(o)
				o.WriteTimeout = writeTimeout
			}})
			c := dialHarness(t, h, 20*time.Second)
			f := largeProduce(1, 1000<<10, rand.New(rand.NewPCG(11, 12)))
			want := sha256.Sum256(f[4+2+2+4+2+3:])
			for i, part := range [][]byte{f[:300<<10], f[300<<10 : 700<<10], f[700<<10:]} {
				if i > 0 {
					time.Sleep(pause)
				}
				if _, err := c.Write(part); err != nil {
					t.Fatal(err)
				}
			}
			var resp [8]byte
			if _, err := io.ReadFull(c, resp[:]); err != nil {
				t.Fatalf("response: %v", err)
			}
			expectBody(t, got, want)
			if n := h.counter("kafkaguard_connections_closed_total", nil); n != 0 {
				t.Errorf("connections_closed_total = %v, want 0", n)
			}
		})
	}
}

// TestCutFrameBehindSlowBrokerIsNotCharged pipelines a frame cut through
// behind a request the broker takes its time over (it reads nothing
// meanwhile, as a Kafka broker mutes a connection until it has answered):
// the frame's steps wait on the broker, each within timeouts.write, for
// longer than timeouts.frame in all. That wait is the broker's, not the
// client's, whose bytes were all there: the frame arrives whole, nothing is
// refused (it used to be cut as frame_timeout, an offence of the client).
func TestCutFrameBehindSlowBrokerIsNotCharged(t *testing.T) {
	const (
		frameTimeout = 1500 * time.Millisecond
		hold         = 2 * frameTimeout
		size         = 8 << 20 // more than the sockets between kafkaguard and the broker hold
	)
	for _, m := range cutModes {
		t.Run(m.name, func(t *testing.T) {
			got := make(chan [32]byte, 1)
			fb := &fakeBroker{}
			fb.testBroker = listenBroker(t, func(c net.Conn) {
				c.(*net.TCPConn).SetReadBuffer(32 << 10)
				fb.serve(c, func(key, version int16, body []byte) []byte {
					if len(body) < size/2 {
						time.Sleep(hold) // the first request: reading nothing meanwhile
					} else {
						got <- sha256.Sum256(body)
					}
					return encodeResponse(kmsg.NewPtrProduceResponse(), version)
				})
			})
			h := newHarness(t, harnessOpts{upstreams: []string{fb.addr()},
				policy: limits.PolicyOptions{MaxRequestBytes: 2 * size, MaxClientIDBytes: 256, MaxDrainBytes: 4 << 20},
				mutate: func(o *Options) {
					m.mutate(o)
					o.FrameTimeout, o.WriteTimeout = frameTimeout, 3*hold
				}})
			c := dialHarness(t, h, 20*time.Second)
			rng := rand.New(rand.NewPCG(13, 14))
			small, large := largeProduce(1, 2<<10, rng), largeProduce(2, size, rng)
			want := sha256.Sum256(large[4+2+2+4+2+3:])
			go c.Write(append(small, large...))
			for i := range 2 {
				resp, err := readFrame(c)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				if corr := int32(binary.BigEndian.Uint32(resp)); corr != int32(i+1) {
					t.Fatalf("response %d has correlation id %d", i+1, corr)
				}
			}
			expectBody(t, got, want)
			if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
				t.Errorf("frames_rejected_total = %v, want 0: the broker's wait was charged to the client", n)
			}
			if n := h.counter("kafkaguard_cut_through_frames_total", nil); n != 1 {
				t.Errorf("cut_through_frames_total = %v, want 1", n)
			}
		})
	}
}

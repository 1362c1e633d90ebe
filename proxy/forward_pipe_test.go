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
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// storeModes are the ways a frame larger than a chunk is stored before the
// broker sees it: through a kernel pipe (Linux), a pipe too small for the
// frame so that the rest spills into chunks, chunks filled by readv as
// many at once as the socket holds bytes for (Linux), and chunks one Read
// each (the portable path, forced here on Linux too).
var storeModes = []struct {
	name   string
	mutate func(*Options)
}{
	{"pipe", func(o *Options) { o.store = storePipe }},
	{"pipe-spill", func(o *Options) { o.store, o.pipeLimit = storePipe, 64<<10 }},
	{"readv", func(o *Options) { o.store = storeReadv }},
	{"chunks", func(o *Options) { o.store = storeChunks }},
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
// order, whichever way they were stored.
func TestLargeFramesArriveWhole(t *testing.T) {
	for _, m := range storeModes {
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
			}
		})
	}
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

package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkaguard/kafkaguard/limits"
)

// TestStoreTakesNoChunkAheadOfBytes sends part of a Produce that declares
// about 1 MiB and checks that the store paths which ask the socket what it
// holds (pipe, readv) hold no more chunks than the bytes that arrived need,
// also when they end exactly on a chunk's end. The chunk path reads one
// chunk at a time and takes the next before it knows a byte will come for
// it, so it may hold one more (64 KiB sent: three chunks); it is not held
// to this bound.
func TestStoreTakesNoChunkAheadOfBytes(t *testing.T) {
	const chunk = 32 << 10
	for _, m := range storeModes {
		if m.name != "pipe" && m.name != "readv" {
			continue
		}
		for _, sent := range []int64{40 << 10, 64 << 10, 300 << 10} {
			t.Run(m.name+"/"+byteSize(int(sent)), func(t *testing.T) {
				b := produceBroker(t, nil)
				h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}, mutate: m.mutate})
				c := dialHarness(t, h, 20*time.Second)
				f := largeProduce(1, 1<<20-64, rand.New(rand.NewPCG(7, 8)))
				if _, err := c.Write(f[:sent]); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, "the bytes sent to be held", func() bool { return h.pool.InUse() >= sent })
				time.Sleep(50 * time.Millisecond) // anything more it would take
				if in, most := h.pool.InUse(), (sent+chunk-1)/chunk*chunk; in > most {
					t.Errorf("pool holds %d chunks for %d bytes of a %d-byte frame, want at most %d",
						in/chunk, sent, len(f), most/chunk)
				}
				if n := h.dials.Load(); n != 0 {
					t.Fatalf("broker dialled before the frame was whole")
				}
				if _, err := c.Write(f[sent:]); err != nil {
					t.Fatal(err)
				}
				var resp [8]byte
				if _, err := io.ReadFull(c, resp[:]); err != nil {
					t.Fatal(err)
				}
				if corr := binary.BigEndian.Uint32(resp[4:]); corr != 1 {
					t.Fatalf("response has correlation id %d, want 1", corr)
				}
				waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
			})
		}
	}
}

// TestSlowStoredFrameIsEvicted holds part of a large frame on one
// connection, whichever way it is stored, until it is older than
// evictStale, then sends a whole frame on another that needs more chunks
// than the pool has left: the slow frame is evicted (slow_frame), its
// chunks are given back, and the whole frame goes through.
func TestSlowStoredFrameIsEvicted(t *testing.T) {
	const chunk = 4 << 10
	for _, m := range storeModes {
		t.Run(m.name, func(t *testing.T) {
			b := produceBroker(t, nil)
			h := newHarness(t, harnessOpts{
				upstreams: []string{b.addr()},
				pool:      limits.PoolOptions{ChunkBytes: chunk, TotalBytes: 8 * chunk},
				mutate:    m.mutate,
			})
			rng := rand.New(rand.NewPCG(9, 10))
			slow := dialHarness(t, h, 20*time.Second)
			if _, err := slow.Write(largeProduce(1, 100<<10, rng)[:20<<10]); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the slow frame's bytes to be held", func() bool { return h.pool.InUse() >= 20<<10 })
			time.Sleep(evictStale + 100*time.Millisecond)

			expectSlowEvicted(t, h, slow, rng)
		})
	}
}

// TestStoredFrameCutShort leaves a large frame unfinished, whichever way it
// is stored: a client that closes mid-frame, and one that stalls past
// timeouts.frame (frame_timeout, an offence). Either way the broker is
// never dialled and every chunk goes back to the pool.
func TestStoredFrameCutShort(t *testing.T) {
	for _, m := range storeModes {
		for _, stall := range []bool{false, true} {
			name := m.name + "/closed"
			if stall {
				name = m.name + "/stalled"
			}
			t.Run(name, func(t *testing.T) {
				b := produceBroker(t, nil)
				h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}, mutate: func(o *Options) {
					m.mutate(o)
					o.FrameTimeout = 300 * time.Millisecond
				}})
				c := dialHarness(t, h, 10*time.Second)
				if _, err := c.Write(largeProduce(1, 500<<10, rand.New(rand.NewPCG(11, 12)))[:100<<10]); err != nil {
					t.Fatal(err)
				}
				waitFor(t, 5*time.Second, "the bytes sent to be held", func() bool { return h.pool.InUse() >= 100<<10 })
				if stall {
					expectClosed(t, c, 5*time.Second)
					if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": reasonFrameTimeout.String()}); n != 1 {
						t.Errorf("frame_timeout = %v, want 1", n)
					}
				} else {
					c.Close()
				}
				waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
				if n := h.dials.Load(); n != 0 {
					t.Errorf("broker dialled %d times for a frame that never completed", n)
				}
			})
		}
	}
}

// TestReadvKeepsTLSOnRead chooses the readv store path on a TLS listener:
// a TLS session's bytes must be decrypted by its Read, so its large frames
// (records up to ~50 KiB, frames over a chunk) are stored by the Read loop
// and arrive whole.
func TestReadvKeepsTLSOnRead(t *testing.T) {
	h := newTLSHarness(t, tls.NoClientCert, false, harnessOpts{mutate: func(o *Options) { o.store = storeReadv }})
	// Uncompressed, or the records' repeated bytes would make small frames.
	cl := h.tlsClient(false, kgo.FetchMaxWait(200*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	defer cl.Close()
	tlsProduceConsume(t, cl, "tls-readv", 100)
	if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
		t.Errorf("%v refusals, want none", n)
	}
}

// TestStoredFrameInFragments sends large frames in pieces, each written
// after the previous one has had time to be read: random sizes from a byte
// to past a chunk, and pieces of exactly a chunk (so a store path often
// finds every chunk it holds full and nothing queued). Whichever way they
// are stored, the broker gets every frame whole and unchanged.
func TestStoredFrameInFragments(t *testing.T) {
	const chunk = 32 << 10
	pieces := map[string]func(*rand.Rand) int{
		"random":   func(rng *rand.Rand) int { return 1 + rng.IntN(40<<10) },
		"chunk":    func(*rand.Rand) int { return chunk },
		"small":    func(rng *rand.Rand) int { return 1 + rng.IntN(3000) },
		"chunk+-1": func(rng *rand.Rand) int { return chunk - 1 + rng.IntN(3) },
	}
	for _, m := range storeModes {
		for name, piece := range pieces {
			t.Run(m.name+"/"+name, func(t *testing.T) {
				got := make(chan [32]byte, 4)
				b := produceBroker(t, func(body []byte) { got <- sha256.Sum256(body) })
				h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}, mutate: m.mutate})
				c := dialHarness(t, h, 20*time.Second)
				rng := rand.New(rand.NewPCG(13, 14))
				for i, size := range []int{100 << 10, 64<<10 - 17, 300 << 10} {
					f := largeProduce(int32(i+1), size, rng)
					for off := 0; off < len(f); {
						n := min(piece(rng), len(f)-off)
						if _, err := c.Write(f[off : off+n]); err != nil {
							t.Fatal(err)
						}
						off += n
						time.Sleep(time.Millisecond)
					}
					var resp [8]byte
					if _, err := io.ReadFull(c, resp[:]); err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					select {
					case sum := <-got:
						if sum != sha256.Sum256(f[4+2+2+4+2+3:]) {
							t.Fatalf("frame %d (%d bytes) reached the broker changed", i, len(f))
						}
					case <-time.After(5 * time.Second):
						t.Fatalf("broker never got frame %d", i)
					}
				}
				waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
			})
		}
	}
}

// expectSlowEvicted has a good client send a 20 KiB Produce beside slow, a
// connection whose frame has been unfinished past evictStale while the
// pool is too small for both, and checks slow is evicted (slow_frame, and
// no pool_exhausted), the good frame answered, and the pool given back.
func expectSlowEvicted(t *testing.T, h *harness, slow net.Conn, rng *rand.Rand) {
	t.Helper()
	good := dialHarness(t, h, 20*time.Second)
	if _, err := good.Write(largeProduce(2, 20<<10, rng)); err != nil {
		t.Fatal(err)
	}
	var resp [8]byte
	if _, err := io.ReadFull(good, resp[:]); err != nil {
		t.Fatalf("whole frame beside a slow one: %v", err)
	}
	expectClosed(t, slow, 5*time.Second)
	if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": reasonSlowFrame.String()}); n != 1 {
		t.Errorf("slow_frame = %v, want 1", n)
	}
	if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": reasonPoolExhausted.String()}); n != 0 {
		t.Errorf("pool_exhausted = %v, want 0", n)
	}
	waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
}

package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/limits"

	"github.com/kafkaguard/kafkaguard/framing"
)

// manyPartitionProduce is a Produce v3 body (acks=-1) naming parts
// partitions of one topic, each with a record set of recordBytes bytes.
func manyPartitionProduce(parts, recordBytes int) []byte {
	b := []byte{0xff, 0xff, 0xff, 0xff} // transactional id null, acks -1
	b = binary.BigEndian.AppendUint32(b, 30000)
	b = binary.BigEndian.AppendUint32(b, 1) // one topic
	b = append(b, 0, 1, 't')                // named "t"
	b = binary.BigEndian.AppendUint32(b, uint32(parts))
	rec := make([]byte, recordBytes)
	for i := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(i))
		b = binary.BigEndian.AppendUint32(b, uint32(recordBytes))
		b = append(b, rec...)
	}
	return b
}

// liveHeap is the heap still reachable after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// The attack of issue 9, defect 2, at reduced scale: dozens of connections
// each pipeline two oversized Produce frames that name many partitions with
// tiny records, and never read. Every answer kafkaguard owes them must come
// out of the pool budget (or the connection is closed answer_too_large), so
// the live heap stays within the budget plus a fixed allowance, however many
// partitions the frames name.
func TestLocalAnswersStayInBudget(t *testing.T) {
	const (
		conns     = 40
		budget    = 8 << 20
		allowance = 16 << 20 // goroutines, sockets, the test's own frames
	)
	for _, tc := range []struct {
		name           string
		parts, records int
	}{
		// 1.09 MB in, a 2.2 MB answer each before the fix.
		{"99000 partitions", 99000, 3},
		// Just under the answer bound: answered, from the pool.
		{"2000 partitions", 2000, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{
				pool: limits.PoolOptions{ChunkBytes: 32 << 10, TotalBytes: budget},
				mutate: func(o *Options) {
					o.PoolWait = 500 * time.Millisecond
					o.WriteTimeout = 3 * time.Second
				},
			})
			frame := rawRequest(framing.KeyProduce, 3, 1, "many", manyPartitionProduce(tc.parts, tc.records))
			pipelined := append(append([]byte(nil), frame...), frame...)
			binary.BigEndian.PutUint32(pipelined[len(frame)+8:], 2) // second correlation id
			base := liveHeap()

			var wg sync.WaitGroup
			cs := make([]net.Conn, 0, conns)
			for range conns {
				c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					c.Write(pipelined) // never read
				}()
			}
			// Sample the live heap while the writes go in and after.
			var peak int64
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				peak = max(peak, liveHeap()-base)
				time.Sleep(50 * time.Millisecond)
			}
			wg.Wait()
			peak = max(peak, liveHeap()-base)
			for _, c := range cs {
				c.Close()
			}
			t.Logf("%d connections × 2 frames of %d bytes (%d partitions): live heap peak +%.1f MiB, pool high water %.1f MiB of %d MiB; answered %v, answer_too_large %v, pool_exhausted %v",
				conns, len(frame), tc.parts, float64(peak)/(1<<20), float64(h.pool.HighWater())/(1<<20), budget>>20,
				h.counter("kafkaguard_local_responses_total", nil),
				h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "answer_too_large"}),
				h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "pool_exhausted"}))
			if peak > budget+allowance {
				t.Errorf("live heap grew by %.1f MiB, more than the pool budget %d MiB + %d MiB",
					float64(peak)/(1<<20), budget>>20, allowance>>20)
			}
		})
	}
}

// A client that pipelines oversized Produce requests and does not read the
// answers stops being read once its queued answers hold more than
// limits.max_local_answer_bytes of the pool: the answers it is owed cost the
// pool a bounded amount per connection and nothing off the pool, and when it
// reads at last, every answer arrives, in order.
func TestUnreadAnswersStopReading(t *testing.T) {
	const (
		conns  = 10
		frames = 200
		chunk  = 32 << 10
	)
	h := newHarness(t, harnessOpts{
		pool:   limits.PoolOptions{ChunkBytes: chunk, TotalBytes: 8 << 20},
		policy: limits.PolicyOptions{MaxRequestBytes: 16 << 10, MaxClientIDBytes: 256, MaxDrainBytes: 1 << 20},
		mutate: func(o *Options) { o.WriteTimeout = 20 * time.Second },
	})
	// 2000 partitions, one record byte each: an 18 KB request over the
	// 16 KiB limit, a 44 KB answer.
	body := manyPartitionProduce(2000, 1)
	var all []byte
	for i := range frames {
		all = append(all, rawRequest(framing.KeyProduce, 3, int32(i), "unread", body)...)
	}
	base := liveHeap()
	var wg sync.WaitGroup
	cs := make([]*net.TCPConn, conns)
	for i := range cs {
		c, err := net.DialTimeout("tcp", h.addrs[0], 10*time.Second) // the writers before it load the machine
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c.(*net.TCPConn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			c.Write(all)
		}()
	}
	// Wait until the answers stop coming: the clients read nothing.
	answered := func() float64 { return h.counter("kafkaguard_local_responses_total", nil) }
	last, still := -1.0, time.Now()
	deadline := time.Now().Add(15 * time.Second)
	for time.Since(still) < 500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("answers kept coming for 15 s to clients that read nothing")
		}
		if n := answered(); n != last {
			last, still = n, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	grew := liveHeap() - base
	perConn := int64(2*(64<<10) + 3*chunk) // queued answers up to the bound + one more, frame, scratch
	t.Logf("%d connections × %d pipelined oversized Produce, unread: %v answered so far, pool in use %d KiB (high water %d KiB), live heap +%.1f MiB",
		conns, frames, last, h.pool.InUse()>>10, h.pool.HighWater()>>10, float64(grew)/(1<<20))
	if last >= conns*frames {
		t.Fatalf("every request was read and answered although no answer was read")
	}
	if hw := h.pool.HighWater(); hw > conns*perConn {
		t.Errorf("pool high water %d KiB, want at most %d KiB (%d per connection)", hw>>10, conns*perConn>>10, perConn>>10)
	}
	if grew > 4<<20 {
		t.Errorf("live heap grew by %.1f MiB while answers were owed, want < 4 MiB (they belong in the pool)", float64(grew)/(1<<20))
	}

	// Now read: every answer arrives, in order.
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for want := range int32(frames) {
			var sz [8]byte
			if _, err := io.ReadFull(c, sz[:]); err != nil {
				t.Fatalf("conn %d: answer %d: %v", i, want, err)
			}
			if corr := int32(binary.BigEndian.Uint32(sz[4:])); corr != want {
				t.Fatalf("conn %d: answer correlation id %d, want %d", i, corr, want)
			}
			if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(sz[:]))-4); err != nil {
				t.Fatalf("conn %d: answer %d: %v", i, want, err)
			}
		}
	}
	wg.Wait()
}

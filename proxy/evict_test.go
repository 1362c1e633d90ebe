package proxy

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/limits"

	"github.com/kafkaguard/kafkaguard/framing"
)

// A frame that has fully arrived but waits for the broker (here: the
// connection's max_inflight is reached and the broker never answers) is
// backpressure, not a slow client: when the pool is spent, a chunk request
// of another connection must not evict it as slow_frame. Only frames still
// waiting for the client's bytes are evictable; the other connection waits
// for pool.wait and is closed pool_exhausted instead. Whichever way the
// frames are stored.
func TestEvictionSparesFramesWaitingOnBroker(t *testing.T) {
	for _, m := range storeModes {
		t.Run(m.name, func(t *testing.T) { testEvictionSparesFramesWaitingOnBroker(t, m.mutate) })
	}
}

func testEvictionSparesFramesWaitingOnBroker(t *testing.T, store func(*Options)) {
	const chunk = 4 << 10
	broker := newFakeBroker(t, func(int16, int16, []byte) []byte { return nil }) // reads, never answers
	h := newHarness(t, harnessOpts{
		upstreams: []string{broker.addr()},
		pool:      limits.PoolOptions{ChunkBytes: chunk, TotalBytes: 4 * chunk},
		mutate: func(o *Options) {
			store(o)
			o.MaxInflight = 1
			o.PoolWait = 500 * time.Millisecond
		},
	})
	defer broker.closeConns() // ends the owed responses before the harness shuts down

	// Metadata v1 frames of 10 KiB: three chunks each when stored whole.
	frame := func(corr int32) []byte {
		return rawRequest(framing.KeyMetadata, 1, corr, "good", bytes.Repeat([]byte{0}, 10<<10))
	}
	good, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	// The first frame is forwarded and owed for ever; the second arrives
	// whole and waits for an in-flight slot, holding its three chunks.
	good.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := good.Write(append(frame(1), frame(2)...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the second frame to hold its chunks", func() bool { return h.pool.InUse() == 3*chunk })
	time.Sleep(evictStale + 200*time.Millisecond) // old enough to be evicted at once, were it slow

	// Another client starts a frame larger than the one chunk left.
	other, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.Write(rawRequest(framing.KeyMetadata, 1, 1, "other", bytes.Repeat([]byte{0}, 10<<10))[:6<<10])
	expectClosed(t, other, 5*time.Second)

	if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": reasonSlowFrame.String()}); n != 0 {
		t.Errorf("%v frames waiting on the broker evicted as slow_frame", n)
	}
	if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": reasonPoolExhausted.String()}); n != 1 {
		t.Errorf("pool_exhausted = %v, want 1 (the other client)", n)
	}
	// The well-behaved connection is still open.
	good.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := good.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("well-behaved connection: read got %v, want it still open (a timeout)", err)
	}
}

package proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"

	"github.com/kafkaguard/kafkaguard/framing"
)

// A broker's Metadata response that declares far more brokers than its
// bytes hold (issue 9, defect 7: 16 MiB declaring 16M brokers made kmsg
// allocate 1 GiB; here 4 MiB declaring 4M) is refused before it is decoded:
// the connection is closed bad_response, and kafkaguard allocates about the
// body, not the declared count.
func TestRewriteRefusesImpossibleCounts(t *testing.T) {
	const size = 4 << 20
	body := make([]byte, 0, size)
	body = binary.BigEndian.AppendUint32(body, size-16) // v1: broker count, one byte each at most
	body = append(body, make([]byte, size-len(body))...)
	broker := newFakeBroker(t, func(key, _ int16, _ []byte) []byte {
		if key == framing.KeyMetadata {
			return body
		}
		return nil
	})
	h := newHarness(t, harnessOpts{upstreams: []string{broker.addr()},
		pool: limits.PoolOptions{ChunkBytes: 32 << 10, TotalBytes: 64 << 20}})
	c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 1
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("t"))
	c.Write(f.AppendRequest(nil, req, 1))
	expectClosed(t, c, 10*time.Second)
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB Metadata body declaring %d brokers: %d MiB allocated while it was refused", size>>20, size-16, allocated>>20)
	if allocated > 3*size {
		t.Errorf("allocated %d MiB for a %d MiB response, want under %d MiB", allocated>>20, size>>20, 3*size>>20)
	}
	if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": reasonBadResponse.String(), "api": "Metadata"}); n != 1 {
		t.Errorf("bad_response rejections = %v, want 1", n)
	}
	waitFor(t, 5*time.Second, "the pool to drain", func() bool { return h.pool.InUse() == 0 })
}

// A large, well-formed Metadata response is rewritten with its memory taken
// from the pool budget (the reservation shows in the high-water mark), and
// one whose decode would not fit the budget is closed pool_exhausted
// instead of decoded beside it.
func TestRewriteMemoryComesFromThePool(t *testing.T) {
	resp := kmsg.NewPtrMetadataResponse()
	b := kmsg.NewMetadataResponseBroker()
	b.NodeID, b.Host, b.Port = 0, "broker", 9092
	resp.Brokers = append(resp.Brokers, b)
	for i := range 2000 {
		tp := kmsg.NewMetadataResponseTopic()
		name := fmt.Sprintf("topic-%04d", i)
		tp.Topic = &name
		for p := range int32(10) {
			pt := kmsg.NewMetadataResponseTopicPartition()
			pt.Partition, pt.Replicas, pt.ISR = p, []int32{0, 1, 2}, []int32{0, 1, 2}
			tp.Partitions = append(tp.Partitions, pt)
		}
		resp.Topics = append(resp.Topics, tp)
	}
	body := encodeResponse(resp, 1)
	broker := newFakeBroker(t, func(key, _ int16, _ []byte) []byte {
		if key == framing.KeyMetadata {
			return body
		}
		return nil
	})
	for _, tc := range []struct {
		name   string
		budget int64
		ok     bool
	}{
		{"fits", 32 << 20, true},
		{"does not fit", 2 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{upstreams: []string{broker.addr()},
				pool:   limits.PoolOptions{ChunkBytes: 32 << 10, TotalBytes: tc.budget},
				mutate: func(o *Options) { o.PoolWait = 200 * time.Millisecond }})
			c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := kmsg.NewPtrMetadataRequest()
			req.Version = 1
			if !tc.ok {
				f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("t"))
				c.Write(f.AppendRequest(nil, req, 1))
				expectClosed(t, c, 10*time.Second)
				if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": reasonPoolExhausted.String(), "api": "Metadata"}); n != 1 {
					t.Errorf("pool_exhausted = %v, want 1", n)
				}
				return
			}
			got := roundTripOn(t, c, req, 1).(*kmsg.MetadataResponse)
			if len(got.Topics) != 2000 || !isProxyAddr(h.addrs, got.Brokers[0].Host, got.Brokers[0].Port) && got.Brokers[0].Host != "broker" {
				t.Fatalf("rewritten response: %d topics, broker %s:%d", len(got.Topics), got.Brokers[0].Host, got.Brokers[0].Port)
			}
			hw := h.pool.HighWater()
			t.Logf("a %d KiB Metadata response rewritten: pool high water %d KiB of %d KiB", len(body)>>10, hw>>10, tc.budget>>10)
			if hw < int64(len(body)) {
				t.Errorf("pool high water %d < the response's %d bytes: the rewrite was not counted", hw, len(body))
			}
		})
	}
}

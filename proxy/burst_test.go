package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

// burstResponder is a broker that answers in bursts: it reads k request
// frames, then writes their k responses (12 bytes each, the correlation id
// copied) in one write, so they reach kafkaguard in one read.
func burstResponder(t *testing.T, k int) string {
	t.Helper()
	return frameServer(t, 64<<10, func(c net.Conn) func([]byte) error {
		c.SetDeadline(time.Now().Add(time.Minute))
		out := make([]byte, 0, 12*k)
		return func(frame []byte) error {
			out = binary.BigEndian.AppendUint32(out, 8)
			out = append(out, frame[4:8]...) // correlation id
			out = append(out, 0, 0, 0, 0)
			if len(out) < 12*k {
				return nil
			}
			_, err := c.Write(out)
			out = out[:0]
			return err
		}
	})
}

// TestResponsesInABurstArriveInOrder: responses the broker sends in one
// burst are relayed together (one write for the ones whole in the chunk),
// and still each in its request's turn, around a local answer queued among
// them, with no in-flight slot lost (MaxInflight is the burst, so a lost
// slot stalls the next round) and no chunk leaked (the harness checks).
func TestResponsesInABurstArriveInOrder(t *testing.T) {
	fetch := func(corr int32) []byte { return rawRequest(framing.KeyFetch, 11, corr, "burst", make([]byte, 64)) }
	req := kmsg.NewPtrProduceRequest()
	req.Version, req.Acks, req.TimeoutMillis = 3, 1, 1000
	topic := kmsg.NewProduceRequestTopic()
	topic.Topic = "t"
	part := kmsg.NewProduceRequestTopicPartition()
	part.Records = make([]byte, 4<<10)
	topic.Partitions = append(topic.Partitions, part)
	req.Topics = append(req.Topics, topic)
	tooLarge := func(corr int32) []byte { return rawRequest(framing.KeyProduce, 3, corr, "burst", req.AppendTo(nil)) }

	cases := []struct {
		name  string
		round []func(int32) []byte // one burst of requests
		k     int                  // how many reach the broker
	}{
		{"four upstream responses", []func(int32) []byte{fetch, fetch, fetch, fetch}, 4},
		{"a local answer second", []func(int32) []byte{fetch, tooLarge, fetch, fetch}, 3},
		{"a local answer last", []func(int32) []byte{fetch, fetch, fetch, tooLarge}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{
				upstreams: []string{burstResponder(t, tc.k)},
				policy: limits.PolicyOptions{MaxRequestBytes: 1 << 20, MaxDrainBytes: 4 << 20,
					PerAPI: map[int16]int32{framing.KeyProduce: 2 << 10}},
				mutate: func(o *Options) { o.MaxInflight = len(tc.round) },
			})
			c, err := net.Dial("tcp", h.addrs[0])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			corr := int32(0)
			var head [8]byte
			for round := range 50 {
				first := corr + 1
				for _, f := range tc.round {
					corr++
					if _, err := c.Write(f(corr)); err != nil {
						t.Fatalf("round %d: write: %v", round, err)
					}
				}
				for want := first; want <= corr; want++ {
					if _, err := io.ReadFull(c, head[:]); err != nil {
						t.Fatalf("round %d: reading the response to %d: %v", round, want, err)
					}
					if got := int32(binary.BigEndian.Uint32(head[4:])); got != want {
						t.Fatalf("round %d: response to %d, want %d", round, got, want)
					}
					if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(head[:]))-4); err != nil {
						t.Fatalf("round %d: response body: %v", round, err)
					}
				}
			}
		})
	}
}

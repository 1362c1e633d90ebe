package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// TestForwardAllocatesNothingPerFrame holds the README's promise that
// nothing is allocated per forwarded frame: a Produce (acks=1) and a Fetch,
// each a round trip through kafkaguard to a responder that allocates
// nothing, after a warm-up that dials the broker and fills the pool. The
// count is the whole process's (testing.AllocsPerRun), so it allows a
// little background noise: half an allocation per round trip on average,
// where one per frame (a header byte array escaping) reads as 1.
func TestForwardAllocatesNothingPerFrame(t *testing.T) {
	if testing.Short() {
		t.Skip("round trips through a proxy")
	}
	produce := make([]byte, 1<<10)
	binary.BigEndian.PutUint16(produce, 0xffff) // null transactional id
	binary.BigEndian.PutUint16(produce[2:], 1)  // acks=1
	cases := []struct {
		name     string
		upstream string
		frame    []byte
		respSize int
	}{
		{"produce 1KiB", responder(t), rawRequest(0, 3, 0, "alloc", produce), 12},
		{"produce 64KiB", responder(t), rawRequest(0, 3, 0, "alloc", append(produce, make([]byte, 63<<10)...)), 12},
		{"fetch answered 1KiB", fetchResponder(t, 1<<10), rawRequest(1, 11, 0, "alloc", make([]byte, 64)), 1 << 10},
		{"fetch answered 256KiB", fetchResponder(t, 256<<10), rawRequest(1, 11, 0, "alloc", make([]byte, 64)), 256 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", benchProxy(t, tc.upstream))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			resp := make([]byte, tc.respSize)
			corr := uint32(0)
			roundTrip := func() {
				corr++
				binary.BigEndian.PutUint32(tc.frame[8:], corr)
				if _, err := c.Write(tc.frame); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					t.Fatal(err)
				}
				if got := binary.BigEndian.Uint32(resp[4:]); got != corr {
					t.Fatalf("response correlation id %d, want %d", got, corr)
				}
			}
			for range 20 {
				roundTrip()
			}
			if avg := testing.AllocsPerRun(400, roundTrip); avg >= 0.5 {
				t.Errorf("%.2f allocations per forwarded frame, want 0", avg)
			}
		})
	}
}

package proxy

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

// A pool spent when the response pump needs a chunk ends the connection as
// a spent pool does on the request pump: pool_exhausted, counted and logged
// (rate-limited). The response pump used to count it without a word.
func TestPoolSpentOnTheResponsePumpIsCountedAndLogged(t *testing.T) {
	pool, err := limits.NewPool(limits.PoolOptions{ChunkBytes: 4 << 10, TotalBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	held, ok := pool.TryGet() // the pool is spent, and no frame of anyone's can be evicted
	if !ok {
		t.Fatal("empty pool")
	}
	defer pool.Put(held)
	policy, err := limits.NewPolicy(limits.PolicyOptions{MaxRequestBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer // written only by relayNext, on this goroutine
	o := testOptions()
	o.Routes = []Route{{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:9"}}
	o.Policy, o.Pool, o.PoolWait = policy, pool, 50*time.Millisecond
	o.Logger, o.Metrics = zerolog.New(&logs), NewMetrics(nil)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	client, clientPeer := net.Pipe()
	defer clientPeer.Close()
	up, broker := net.Pipe()
	defer broker.Close()
	c := s.newConn(s.routes[0], client, netip.Addr{})
	c.upstream = up
	defer up.Close()
	go func() {
		// A small response's size and correlation id: relaying it takes a chunk.
		var head [8]byte
		binary.BigEndian.PutUint32(head[:], 100)
		binary.BigEndian.PutUint32(head[4:], 1)
		broker.SetWriteDeadline(time.Now().Add(5 * time.Second))
		broker.Write(head[:])
	}()
	if c.relayNext(inflightReq{corr: 1, key: framing.KeyProduce, due: time.Now().Add(5 * time.Second)}) {
		t.Fatal("relayed a response with the pool spent")
	}
	if r, _ := c.closeReason(); r != reasonPoolExhausted {
		t.Fatalf("close reason %v, want pool_exhausted", r)
	}
	if !strings.Contains(logs.String(), `"reason":"pool_exhausted"`) {
		t.Errorf("no warning naming pool_exhausted; logged: %q", logs.String())
	}
}

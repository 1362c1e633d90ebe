package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

// produceConsume produces n keyed records through cl and consumes them back
// with a fresh consumer, comparing byte for byte.
func produceConsume(t *testing.T, h *harness, topic string, n int, valueSize int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := h.client(kgo.DefaultProduceTopic(topic))
	want := make(map[string][]byte, n)
	for i := range n {
		key := fmt.Sprintf("key-%04d", i)
		val := bytes.Repeat([]byte{byte(i)}, valueSize)
		want[key] = val
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: val}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	cons := h.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for len(want) > 0 {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume: %d records missing: %v", len(want), err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			v, ok := want[string(r.Key)]
			if !ok {
				t.Fatalf("unexpected record key %q", r.Key)
			}
			if !bytes.Equal(v, r.Value) {
				t.Fatalf("record %q: value differs", r.Key)
			}
			delete(want, string(r.Key))
		})
	}
}

func TestProduceConsumeThroughProxy(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	produceConsume(t, h, "through", 200, 100)
	if got := h.counter("kafkaguard_frames_forwarded_total", map[string]string{"api": "Produce"}); got < 200 {
		t.Errorf("forwarded Produce = %v, want >= 200", got)
	}
	if got := h.counter("kafkaguard_frames_rejected_total", nil); got != 0 {
		t.Errorf("rejected = %v, want 0", got)
	}
}

// A value close to the limit goes through whole, in several chunks.
func TestLargeRecordThroughSmallChunks(t *testing.T) {
	h := newHarness(t, harnessOpts{pool: limits.PoolOptions{ChunkBytes: 4 << 10, TotalBytes: 8 << 20}})
	produceConsume(t, h, "large", 5, 900<<10)
}

func TestCutThroughLargeFrames(t *testing.T) {
	h := newHarness(t, harnessOpts{
		pool:   limits.PoolOptions{ChunkBytes: 8 << 10, TotalBytes: 8 << 20},
		mutate: func(o *Options) { o.CutThroughBytes = 16 << 10 },
	})
	produceConsume(t, h, "cut", 10, 200<<10)
}

// Every broker address a client learns (Metadata, FindCoordinator,
// DescribeCluster, and the client's own discovered brokers) is a kafkaguard
// listener.
func TestMetadataShowsOnlyProxyAddresses(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hook := &connectHook{}
	cl := h.client(kgo.WithHooks(hook))
	upstream := h.cluster.ListenAddrs()

	// Raw requests at each version, so no client negotiates the version away.
	for _, v := range []int16{0, 1, 4, 9, 12} {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = v
		req.Topics = nil
		resp := roundTrip(t, h.addrs[v%3], req).(*kmsg.MetadataResponse)
		if len(resp.Brokers) != 3 {
			t.Fatalf("metadata v%d: %d brokers, want 3", v, len(resp.Brokers))
		}
		for _, b := range resp.Brokers {
			if !isProxyAddr(h.addrs, b.Host, b.Port) {
				t.Errorf("metadata v%d: broker %d at %s:%d is not a kafkaguard address (%v; upstreams %v)",
					v, b.NodeID, b.Host, b.Port, h.addrs, upstream)
			}
		}
	}
	for _, v := range []int16{0, 3, 4, 6} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version = v
		if v < 4 {
			req.CoordinatorKey = "group-a"
		} else {
			req.CoordinatorKeys = []string{"group-a", "group-b"}
		}
		resp := roundTrip(t, h.addrs[0], req).(*kmsg.FindCoordinatorResponse)
		if v < 4 {
			if resp.ErrorCode != 0 {
				t.Fatalf("find coordinator v%d: error code %d", v, resp.ErrorCode)
			}
			if !isProxyAddr(h.addrs, resp.Host, resp.Port) {
				t.Errorf("find coordinator v%d: %s:%d is not a kafkaguard address", v, resp.Host, resp.Port)
			}
		} else if len(resp.Coordinators) != 2 {
			t.Fatalf("find coordinator v%d: %d coordinators, want 2", v, len(resp.Coordinators))
		}
		for _, c := range resp.Coordinators {
			if !isProxyAddr(h.addrs, c.Host, c.Port) {
				t.Errorf("find coordinator v%d: %s:%d is not a kafkaguard address", v, c.Host, c.Port)
			}
		}
	}
	dreq := kmsg.NewPtrDescribeClusterRequest()
	dresp := roundTrip(t, h.addrs[2], dreq).(*kmsg.DescribeClusterResponse)
	if len(dresp.Brokers) != 3 {
		t.Fatalf("describe cluster: %d brokers, want 3", len(dresp.Brokers))
	}
	for _, b := range dresp.Brokers {
		if !isProxyAddr(h.addrs, b.Host, b.Port) {
			t.Errorf("describe cluster: %s:%d is not a kafkaguard address", b.Host, b.Port)
		}
	}
	// And a real client, end to end.
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "meta", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, a := range hook.addrs() {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		if !isProxyAddr(h.addrs, host, int32(p)) {
			t.Errorf("client connected to %s, not a kafkaguard address", a)
		}
	}
	if got := h.counter("kafkaguard_responses_rewritten_total", map[string]string{"api": "Metadata"}); got < 5 {
		t.Errorf("rewritten Metadata = %v, want >= 5", got)
	}
}

// A client bootstrapped on the second listener reaches all three brokers,
// each through its own listener, and produces to every partition.
func TestBootstrapOnAnyListener(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := h.client(kgo.SeedBrokers(h.addrs[1]), kgo.DefaultProduceTopic("any"),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	for i := range 30 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	if n := len(cl.DiscoveredBrokers()); n != 3 {
		t.Errorf("discovered %d brokers, want 3", n)
	}
	if h.dials.Load() < 3 {
		t.Errorf("kafkaguard dialled %d upstream connections, want one per broker at least", h.dials.Load())
	}
}

// An over-limit frame closes its own connection and no other.
func TestOverLimitClosesOnlyItsConnection(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := h.client(kgo.DefaultProduceTopic("neighbour"))
	if err := cl.ProduceSync(ctx, kgo.StringRecord("before")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	bad, err := net.Dial("tcp", h.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	// A Metadata request declaring 2 MiB (limit 1 MiB): not a Produce, so
	// it is closed rather than answered.
	frame := rawRequest(3, 1, 7, "bad", nil)
	binary.BigEndian.PutUint32(frame, 2<<20)
	bad.Write(frame)
	expectClosed(t, bad, 5*time.Second)

	waitFor(t, 5*time.Second, "rejected metric", func() bool {
		return h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "too_large", "api": "Metadata"}) == 1
	})
	if err := cl.ProduceSync(ctx, kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatalf("neighbour produce after the bad frame: %v", err)
	}
	// The neighbour may open a connection to another broker (a new
	// partition leader), but none of its connections may close: only the
	// bad one ends.
	closed := func() float64 { return h.counter("kafkaguard_connections_closed_total", nil) }
	waitFor(t, 2*time.Second, "the bad connection forgotten", func() bool { return closed() >= 1 })
	if got := closed(); got != 1 {
		t.Errorf("%v connections closed, want 1 (the bad one): the neighbour lost a connection", got)
	}
}

// 300 connections that each declare a just-under-limit frame and then
// trickle its bytes hold no more than the pool budget, and none of their
// bytes reach a broker: store-and-forward never dials for an incomplete frame.
func TestSlowDeclarationsStayWithinPoolBudget(t *testing.T) {
	const (
		conns  = 300
		budget = 4 << 20
		chunk  = 16 << 10
	)
	h := newHarness(t, harnessOpts{
		pool: limits.PoolOptions{ChunkBytes: chunk, TotalBytes: budget},
		mutate: func(o *Options) {
			o.PoolWait = 300 * time.Millisecond
			o.FrameTimeout = 3 * time.Second
		},
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	hdr := rawRequest(0, 3, 1, "slow", []byte{0xff, 0xff, 0xff, 0xff}) // txn id null, acks -1
	binary.BigEndian.PutUint32(hdr, (1<<20)-64)                        // just under the 1 MiB limit
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	for i := range conns {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", h.addrs[i%3])
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer c.Close()
			c.Write(hdr)
			payload := bytes.Repeat([]byte{'x'}, 1024)
			// Trickle 1 KiB every 100 ms, at most 40 times (4 s): bounded.
			for range 40 {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := c.Write(payload); err != nil {
					return // closed by kafkaguard
				}
			}
		}(i)
	}
	// While they hold the pool, a well-behaved client is still served: its
	// chunk requests evict the slowest unfinished frames.
	waitFor(t, 5*time.Second, "slow frames to fill the pool", func() bool { return h.pool.InUse() >= budget-2*chunk })
	if n := h.dials.Load(); n != 0 {
		t.Errorf("kafkaguard dialled the broker %d times for frames that never completed", n)
	}
	produceConsume(t, h, "beside-slow", 5, 100)
	wg.Wait()
	close(stop)

	if hw := h.pool.HighWater(); hw > budget {
		t.Errorf("pool high water %d > budget %d", hw, budget)
	}
	t.Logf("pool high-water mark under %d slow declarations: %d KiB of %d KiB budget", conns, h.pool.HighWater()>>10, budget>>10)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > budget+32<<20 {
		t.Errorf("heap grew by %d MiB, more than the pool budget + 32 MiB", grew>>20)
	}
	waitFor(t, 5*time.Second, "pool drained", func() bool { return h.pool.InUse() == 0 })
	exhausted := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "pool_exhausted"})
	timedOut := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "frame_timeout"})
	evicted := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "slow_frame"})
	t.Logf("closed: %v pool_exhausted, %v frame_timeout, %v slow_frame", exhausted, timedOut, evicted)
	// Every slow connection ended for one of these reasons. A few more are
	// the well-behaved client's: under load a chunk wait of PoolWait can run
	// out before an evicted frame's goroutine frees its chunks, and the
	// client retries.
	if sum := exhausted + timedOut + evicted; sum < conns || sum > conns+3 {
		t.Errorf("pool_exhausted %v + frame_timeout %v + slow_frame %v: want %d connections (+3 at most)", exhausted, timedOut, evicted, conns)
	}
	if evicted == 0 {
		t.Error("no slow frame was evicted for the well-behaved client")
	}
	// And the proxy still serves a real client.
	produceConsume(t, h, "after-slow", 10, 10)
}

// Produce with acks=0 expects no response: the in-flight queue must not
// wait for one, or the next response would be matched to it.
func TestAcksZeroThenRequest(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := h.client(kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite(), kgo.DefaultProduceTopic("acks0"))
	for i := range 20 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("produce acks=0: %v", err)
		}
	}
	req := kmsg.NewPtrMetadataRequest()
	if _, err := req.RequestWith(ctx, cl); err != nil {
		t.Fatalf("metadata after acks=0 produce: %v", err)
	}
	if got := h.counter("kafkaguard_frames_rejected_total", nil); got != 0 {
		t.Errorf("rejected = %v, want 0", got)
	}
}

func TestUpstreamDownClosesPromptly(t *testing.T) {
	h := newHarness(t, harnessOpts{noUpstream: true, brokers: 1})
	c, err := net.Dial("tcp", h.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	c.Write(rawRequest(18, 0, 1, "x", req.AppendTo(nil)))
	expectClosed(t, c, 5*time.Second)
	if got := h.counter("kafkaguard_upstream_dial_errors_total", nil); got != 1 {
		t.Errorf("dial errors = %v, want 1", got)
	}
	if err := h.srv.Ready(context.Background()); err == nil {
		t.Error("Ready() = nil with no upstream listening")
	}
}

// Shutdown lets a connection finish and stops accepting.
func TestShutdownDrains(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := h.client(kgo.DefaultProduceTopic("drain"))
	if err := cl.ProduceSync(ctx, kgo.StringRecord("x")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", h.addrs[0], time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
	if n := h.counter("kafkaguard_connections_active", nil); n != 0 {
		t.Errorf("connections_active = %v after shutdown", n)
	}
}

// connectHook records every broker address a franz-go client dials.
type connectHook struct {
	mu   sync.Mutex
	seen []string
}

func (h *connectHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, _ error) {
	h.mu.Lock()
	h.seen = append(h.seen, net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))))
	h.mu.Unlock()
}

func (h *connectHook) addrs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

// ApiVersions answers offer only versions kafkaguard parses and no denied
// key, so a client never picks a request kafkaguard would close.
func TestApiVersionsClamped(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, policy: limits.PolicyOptions{
		MaxRequestBytes: 1 << 20, MaxClientIDBytes: 256, MaxDrainBytes: 4 << 20, Deny: []int16{20}}})
	// (kfake closes on an ApiVersions version it does not know, where Kafka
	// answers UNSUPPORTED_VERSION in a v0 body; that path is not covered here.)
	for _, v := range []int16{0, 3, 4} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = v
		if v >= 3 {
			req.ClientSoftwareName, req.ClientSoftwareVersion = "kafkaguard-test", "1"
		}
		c, err := net.Dial("tcp", h.addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		c.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("t")).AppendRequest(nil, req, 1))
		resp := readResponseFrom(t, c, req, 1).(*kmsg.ApiVersionsResponse)
		c.Close()
		if len(resp.ApiKeys) == 0 {
			t.Fatalf("ApiVersions v%d: no keys", v)
		}
		for _, k := range resp.ApiKeys {
			if k.ApiKey == 20 {
				t.Errorf("ApiVersions v%d offers denied DeleteTopics", v)
			}
			if maxVer, _ := framing.MaxVersion(k.ApiKey); k.ApiKey != 18 && k.MaxVersion > maxVer {
				t.Errorf("ApiVersions v%d offers %s up to v%d, kafkaguard parses up to v%d",
					v, kmsg.NameForKey(k.ApiKey), k.MaxVersion, maxVer)
			}
		}
	}
}

// A client that half-closes after pipelining requests still receives every
// response it is owed.
func TestHalfCloseDeliversOwedResponses(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	c, err := net.Dial("tcp", h.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("half"))
	var out []byte
	for corr := int32(1); corr <= 5; corr++ {
		out = append(out, f.AppendRequest(nil, kmsg.NewPtrMetadataRequest(), corr)...)
	}
	c.Write(out)
	c.(*net.TCPConn).CloseWrite()
	for corr := int32(1); corr <= 5; corr++ {
		readResponseFrom(t, c, kmsg.NewPtrMetadataRequest(), corr)
	}
	expectClosed(t, c, 5*time.Second)
}

// The response pump runs only while responses are owed: after pumpLinger
// with nothing owed its goroutine ends, so an idle connection runs one
// goroutine and holds no chunk; the next request starts it again.
func TestResponsePumpEndsWhenIdle(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	c, err := net.Dial("tcp", h.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTripOn(t, c, kmsg.NewPtrApiVersionsRequest(), 1)
	pumping := func() bool {
		h.srv.mu.Lock()
		defer h.srv.mu.Unlock()
		for sc := range h.srv.conns {
			sc.inflight.mu.Lock()
			p := sc.inflight.pumping
			sc.inflight.mu.Unlock()
			if p {
				return true
			}
		}
		return false
	}
	if !pumping() {
		t.Fatal("no response pump right after a response: it should linger")
	}
	waitFor(t, 5*pumpLinger, "the pump to end", func() bool { return !pumping() })
	if n := h.pool.InUse(); n != 0 {
		t.Errorf("idle connection holds %d pool bytes", n)
	}
	for corr := int32(2); corr < 5; corr++ {
		roundTripOn(t, c, kmsg.NewPtrMetadataRequest(), corr)
	}
}

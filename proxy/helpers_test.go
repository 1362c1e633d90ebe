package proxy

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"
)

// harness is a kfake cluster with a kafkaguard Server in front of it, one
// listener per broker, all on 127.0.0.1.
type harness struct {
	t       *testing.T
	cluster *kfake.Cluster
	srv     *Server
	reg     *prometheus.Registry
	pool    *limits.Pool
	addrs   []string // kafkaguard listener addresses
	dials   atomic.Int64
}

type harnessOpts struct {
	brokers    int
	pool       limits.PoolOptions
	policy     limits.PolicyOptions
	gate       *limits.GateOptions
	mutate     func(*Options)
	kfakeOpts  []kfake.Opt
	noUpstream bool     // listeners point at a closed port
	upstreams  []string // listeners point at these instead of a kfake cluster (fakeBroker)
}

func newHarness(t *testing.T, ho harnessOpts) *harness {
	t.Helper()
	if ho.brokers == 0 {
		ho.brokers = 3
	}
	if ho.pool.ChunkBytes == 0 {
		ho.pool = limits.PoolOptions{ChunkBytes: 32 << 10, TotalBytes: 64 << 20}
	}
	if ho.policy.MaxRequestBytes == 0 {
		ho.policy.MaxRequestBytes = 1 << 20
		ho.policy.MaxClientIDBytes = 256
		ho.policy.MaxDrainBytes = 4 << 20
	}
	h := &harness{t: t, reg: prometheus.NewRegistry()}
	var upstreams []string
	if len(ho.upstreams) > 0 {
		upstreams = ho.upstreams
		ho.brokers = len(upstreams)
	} else if ho.noUpstream {
		for range ho.brokers {
			upstreams = append(upstreams, closedAddr(t))
		}
	} else {
		opts := append([]kfake.Opt{kfake.NumBrokers(ho.brokers), kfake.AllowAutoTopicCreation(),
			kfake.DefaultNumPartitions(3)}, ho.kfakeOpts...)
		c, err := kfake.NewCluster(opts...)
		if err != nil {
			t.Fatalf("kfake: %v", err)
		}
		t.Cleanup(c.Close)
		h.cluster = c
		upstreams = c.ListenAddrs()
	}
	m := NewMetrics(h.reg)
	ho.pool.OnWait = func(d time.Duration) { m.PoolWait(d.Seconds()) }
	pool, err := limits.NewPool(ho.pool)
	if err != nil {
		t.Fatal(err)
	}
	h.pool = pool
	pol, err := limits.NewPolicy(ho.policy)
	if err != nil {
		t.Fatal(err)
	}
	var routes []Route
	for _, up := range upstreams {
		routes = append(routes, Route{Listen: "127.0.0.1:0", Upstream: up})
	}
	o := testOptions()
	o.Routes, o.Policy, o.Pool, o.Metrics = routes, pol, pool, m
	o.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if ho.gate != nil {
		o.Gate = testGate(t, *ho.gate)
	}
	d := &net.Dialer{Timeout: 2 * time.Second}
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		h.dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	if ho.mutate != nil {
		ho.mutate(&o)
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	for _, a := range srv.Addrs() {
		h.addrs = append(h.addrs, a.String())
	}
	done := make(chan struct{})
	go func() { srv.Serve(); close(done) }()
	t.Cleanup(func() {
		// Longer than franz-go's 5s fetch wait: a consumer closed just
		// before is still owed its long poll, and the drain delivers it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		if n := pool.InUse(); n != 0 {
			t.Errorf("pool holds %d bytes after shutdown: a chunk leaked", n)
		}
	})
	return h
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func (h *harness) client(opts ...kgo.Opt) *kgo.Client {
	h.t.Helper()
	all := append([]kgo.Opt{kgo.SeedBrokers(h.addrs[0]), kgo.AllowAutoTopicCreation(),
		kgo.ProducerLinger(0), kgo.RequestRetries(2)}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cl.Close)
	return cl
}

// counter sums a counter family over the series whose labels contain want.
func (h *harness) counter(name string, want map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, want) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawRequest builds a request frame by hand: size, api key, version,
// correlation id, client id (header v1) and body.
func rawRequest(key, version int16, corr int32, clientID string, body []byte) []byte {
	b := make([]byte, 4, 4+10+len(clientID)+len(body))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// expectClosed reads from c until it is closed by the peer, failing if that
// does not happen within d.
func expectClosed(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection still open after %v", d)
		}
		return
	}
}

func isProxyAddr(addrs []string, host string, port int32) bool {
	for _, a := range addrs {
		h, p, _ := net.SplitHostPort(a)
		if strings.EqualFold(h, host) && p == strconv.Itoa(int(port)) {
			return true
		}
	}
	return false
}

// roundTrip sends req at its own version over a fresh connection to addr
// and decodes the response, bypassing any client's version negotiation.
func roundTrip(t *testing.T, addr string, req kmsg.Request) kmsg.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return roundTripOn(t, c, req, 1)
}

// roundTripOn sends req on c with correlation id corr and reads its response.
func roundTripOn(t *testing.T, c net.Conn, req kmsg.Request, corr int32) kmsg.Response {
	t.Helper()
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kafkaguard-test"))
	if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
		t.Fatalf("write %s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return readResponseFrom(t, c, req, corr)
}

// readResponseFrom reads and decodes the response to req, which must carry
// correlation id corr.
func readResponseFrom(t *testing.T, c net.Conn, req kmsg.Request, corr int32) kmsg.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sz [4]byte
	if _, err := io.ReadFull(c, sz[:]); err != nil {
		t.Fatalf("read %s response size: %v", kmsg.NameForKey(req.Key()), err)
	}
	buf := make([]byte, binary.BigEndian.Uint32(sz[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read %s response: %v", kmsg.NameForKey(req.Key()), err)
	}
	if got := int32(binary.BigEndian.Uint32(buf)); got != corr {
		t.Fatalf("%s response correlation id %d, want %d", kmsg.NameForKey(req.Key()), got, corr)
	}
	buf = buf[4:]
	resp := req.ResponseKind()
	if resp.IsFlexible() && req.Key() != 18 {
		n, w := binary.Uvarint(buf) // response header v1 tagged fields
		if w <= 0 || n != 0 {
			t.Fatalf("unexpected response header tags")
		}
		buf = buf[w:]
	}
	if err := resp.ReadFrom(buf); err != nil {
		t.Fatalf("decode %s v%d response: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp
}

package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"
)

// These tests drive the abuse gate through real listeners. Sources are told
// apart by binding the client side to different loopback addresses: the whole
// of 127.0.0.0/8 is local on Linux, and the proxy listens on 127.0.0.1.

// banLog records what the gate's hooks were called with.
type banLog struct {
	mu     sync.Mutex
	bans   []limits.Ban
	unbans []limits.Ban
}

func (l *banLog) counts() (bans, unbans int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.bans), len(l.unbans)
}

// newAbuseHarness is a one-broker harness whose gate is wired as
// cmd/kafkaguard wires it: OnBan counts kafkaguard_bans_total and
// kafkaguard_bans_active gauges the gate's bans in force.
func newAbuseHarness(t *testing.T, g limits.GateOptions, ho harnessOpts) (*harness, *banLog) {
	t.Helper()
	bl := &banLog{}
	ho.brokers = 1
	ho.gate = nil
	prev := ho.mutate
	ho.mutate = func(o *Options) {
		m := o.Metrics
		g.OnBan = func(b limits.Ban) {
			m.Banned()
			bl.mu.Lock()
			bl.bans = append(bl.bans, b)
			bl.mu.Unlock()
		}
		g.OnUnban = func(b limits.Ban) {
			bl.mu.Lock()
			bl.unbans = append(bl.unbans, b)
			bl.mu.Unlock()
		}
		o.Gate = testGate(t, g)
		if prev != nil {
			prev(o)
		}
	}
	h := newHarness(t, ho)
	gate := h.srv.Gate()
	h.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kafkaguard_bans_active",
		Help: "Source addresses banned now."}, func() float64 { return float64(gate.ActiveBans()) }))
	return h, bl
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}

// clientFrom is a franz-go client whose connections all come from src.
func clientFrom(h *harness, src string, opts ...kgo.Opt) *kgo.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return h.client(append([]kgo.Opt{kgo.Dialer(d.DialContext)}, opts...)...)
}

// apiVersionsOn sends an ApiVersions v0 request with correlation id corr on
// c and reads its response: a round trip through kafkaguard to the broker.
func apiVersionsOn(c net.Conn, corr int32) error {
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("abuse-test"))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
		return fmt.Errorf("write ApiVersions: %w", err)
	}
	return readCorr(c, corr, make([]byte, 0, 4096))
}

// readCorr reads one response frame into buf's capacity and checks that it
// answers corr.
func readCorr(c net.Conn, corr int32, buf []byte) error {
	var sz [4]byte
	if _, err := io.ReadFull(c, sz[:]); err != nil {
		return fmt.Errorf("read response size: %w", err)
	}
	n := int(binary.BigEndian.Uint32(sz[:]))
	if n < 4 || n > 1<<20 {
		return fmt.Errorf("response size %d", n)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if got := int32(binary.BigEndian.Uint32(buf)); got != corr {
		return fmt.Errorf("response correlation id %d, want %d", got, corr)
	}
	return nil
}

// tryServed opens a connection from src and makes one round trip on it. It
// returns the open connection, or an error when kafkaguard refused it.
func tryServed(h *harness, src string) (net.Conn, error) {
	c, err := dialFrom(src, h.addrs[0])
	if err != nil {
		return nil, err
	}
	if err := apiVersionsOn(c, 1); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// served opens a connection from src that kafkaguard must serve; the test
// closes it at the end.
func served(t *testing.T, h *harness, src string) net.Conn {
	t.Helper()
	c, err := tryServed(h, src)
	if err != nil {
		t.Fatalf("connection from %s not served: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectRefused opens a connection from src and checks that kafkaguard
// closes it at accept for reason: before reading a byte, so with no
// rejected frame and no new accepted connection, and counted by reason.
func expectRefused(t *testing.T, h *harness, src string, reason limits.Reason) {
	t.Helper()
	label := map[string]string{"reason": string(reason)}
	refused := h.counter("kafkaguard_connections_refused_total", label)
	rejected := h.counter("kafkaguard_frames_rejected_total", nil)
	accepted := h.counter("kafkaguard_connections_total", nil)
	dials := h.dials.Load()
	if err := refusedFrom(src, h.addrs[0]); err != nil {
		t.Fatalf("connection from %s: %v, want refused (%s)", src, err, reason)
	}
	// The count is made before the close the client just saw.
	if got := h.counter("kafkaguard_connections_refused_total", label); got != refused+1 {
		t.Errorf("connections_refused_total{reason=%q} %v -> %v, want +1", reason, refused, got)
	}
	if got := h.counter("kafkaguard_frames_rejected_total", nil); got != rejected {
		t.Errorf("a refused connection from %s had a frame read: frames_rejected_total %v -> %v", src, rejected, got)
	}
	if got := h.counter("kafkaguard_connections_total", nil); got != accepted {
		t.Errorf("a refused connection from %s was accepted: connections_total %v -> %v", src, accepted, got)
	}
	if got := h.dials.Load(); got != dials {
		t.Errorf("a refused connection from %s dialled the broker (%d dials)", src, got-dials)
	}
}

// refusedFrom connects from src and returns nil if kafkaguard closes the
// connection at once without answering. A byte sent is never read: the
// proxy resets the connection, which the client sees as a reset or an end of
// stream, or, when the reset overtakes the handshake's end, as a failed dial.
func refusedFrom(src, addr string) error {
	c, err := dialFrom(src, addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.Write([]byte{0})
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return errors.New("admitted: still open after 3s")
	case n > 0 || err == nil:
		return fmt.Errorf("admitted: answered %d bytes", n)
	}
	return nil
}

// seedDeclaration is the seed's reconnect loop in one connection: a size
// prefix declaring a frame of 50 MiB and a byte, then the wait for the close.
var seedDeclaration = append(be32(50<<20+1), 0)

// offend sends the seed's 50 MiB declaration from src on a connection that
// must be admitted, and waits for kafkaguard to close it as too_large.
func offend(t *testing.T, h *harness, src string) {
	t.Helper()
	label := map[string]string{"reason": "too_large", "api": "none"}
	before := h.counter("kafkaguard_frames_rejected_total", label)
	active := h.counter("kafkaguard_connections_active", nil)
	c, err := dialFrom(src, h.addrs[0])
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	defer c.Close()
	if _, err := c.Write(seedDeclaration); err != nil {
		t.Fatalf("write from %s: %v", src, err)
	}
	expectClosed(t, c, 5*time.Second)
	// The offence is recorded before the close; the rejection proves the
	// connection was admitted and its size prefix read.
	if got := h.counter("kafkaguard_frames_rejected_total", label); got != before+1 {
		t.Fatalf("50 MiB declaration from %s: frames_rejected_total{too_large} %v -> %v, want +1 (refused at accept?)",
			src, before, got)
	}
	// The client sees the close before kafkaguard releases the connection's
	// place under the per-IP cap; wait for that, so the next connection from
	// src is not refused by a cap of 1.
	waitFor(t, 2*time.Second, "the offending connection released", func() bool {
		return h.counter("kafkaguard_connections_active", nil) <= active
	})
}

// bansInForce lists the sources banned now, as GET /bans names them (the handler is in cmd/internal/app).
func bansInForce(t *testing.T, h *harness) []string {
	t.Helper()
	addrs := []string{}
	for _, b := range h.srv.Gate().Bans() {
		if b.Reason == "" || b.Count < 1 || !b.Until.After(b.Since) {
			t.Errorf("incomplete ban %+v", b)
		}
		addrs = append(addrs, limits.SourceString(b.Source))
	}
	return addrs
}

// unban lifts the ban of the source holding ip, as DELETE /bans/{ip} does, and reports whether there was one.
func unban(h *harness, ip string) bool {
	g := h.srv.Gate()
	return g.Unban(g.Source(netip.MustParseAddr(ip)).Addr())
}

// onlyBan returns the one ban in force, which must be of addr (as /bans shows it).
func onlyBan(t *testing.T, h *harness, addr string) limits.Ban {
	t.Helper()
	bans := h.srv.Gate().Bans()
	if len(bans) != 1 || limits.SourceString(bans[0].Source) != addr {
		t.Fatalf("bans in force = %+v, want one of %s", bans, addr)
	}
	return bans[0]
}

// sleepUntil sleeps until t has passed by a margin.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t) + 150*time.Millisecond) }

// The seed's reconnect loop: a source that reconnects and declares a 50 MiB
// frame again and again is banned after offences_before_ban, refused at
// accept for the whole ban, and served again once it ends, while a clean
// neighbour produces throughout.
func TestAbuseReconnectLoopBanned(t *testing.T) {
	const banMin = 2 * time.Second
	h, bl := newAbuseHarness(t, limits.GateOptions{
		OffencesBeforeBan: 5, BanMin: banMin, BanMax: 10 * time.Second,
		MaxConnsPerIP: 100, RatePerSecond: 1000, RateBurst: 1000,
	}, harnessOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	neighbour := clientFrom(h, "127.0.0.3", kgo.DefaultProduceTopic("neighbour"))
	produce := func(what string) {
		t.Helper()
		if err := neighbour.ProduceSync(ctx, kgo.StringRecord(what)).FirstErr(); err != nil {
			t.Fatalf("clean neighbour %s: %v", what, err)
		}
	}
	produce("before the loop")

	for i := 1; i <= 5; i++ {
		offend(t, h, "127.0.0.2")
		if got := h.counter("kafkaguard_bans_total", nil); i < 5 && got != 0 {
			t.Fatalf("banned after %d offences, want after 5", i)
		}
	}
	if got := h.counter("kafkaguard_bans_total", nil); got != 1 {
		t.Fatalf("bans_total = %v after 5 offences, want 1", got)
	}
	if got := h.counter("kafkaguard_bans_active", nil); got != 1 {
		t.Errorf("bans_active = %v, want 1", got)
	}
	ban := onlyBan(t, h, "127.0.0.2")
	if ban.Count != 1 || ban.Until.Sub(ban.Since) != banMin || ban.Reason != "too_large" {
		t.Errorf("ban = %+v, want the first (count 1), %v long, for too_large", ban, banMin)
	}
	if got := bansInForce(t, h); len(got) != 1 || got[0] != "127.0.0.2" {
		t.Errorf("bans in force: %v, want [127.0.0.2]", got)
	}
	produce("right after the ban")

	// The loop goes on; every attempt is refused at accept until the ban's
	// end (attempts stop short of it by a margin for scheduling).
	attempts := 0
	for time.Until(ban.Until) > 500*time.Millisecond {
		expectRefused(t, h, "127.0.0.2", limits.ReasonBanned)
		attempts++
		if attempts%5 == 0 {
			produce(fmt.Sprintf("during the ban, attempt %d", attempts))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if attempts == 0 {
		t.Fatal("no attempt made during the ban")
	}
	if n, _ := bl.counts(); n != 1 {
		t.Errorf("OnBan called %d times for one ban and %d refused connections, want once", n, attempts)
	}

	sleepUntil(ban.Until)
	c := served(t, h, "127.0.0.2")
	c.Close()
	if _, unbans := bl.counts(); unbans != 1 {
		t.Errorf("OnUnban called %d times after the ban expired, want 1", unbans)
	}
	if got := bansInForce(t, h); len(got) != 0 {
		t.Errorf("bans in force: %v after expiry, want none", got)
	}
	if got := h.counter("kafkaguard_bans_active", nil); got != 0 {
		t.Errorf("bans_active = %v after expiry, want 0", got)
	}
	// Served again means judged again: the loop earns its next ban.
	for range 5 {
		offend(t, h, "127.0.0.2")
	}
	expectRefused(t, h, "127.0.0.2", limits.ReasonBanned)
	produce("after the second ban")
	t.Logf("refused %d reconnects during a %v ban", attempts, banMin)
}

// Each further ban of a source doubles, up to BanMax; a ban expires on its
// own; DELETE /bans/{ip} lifts one at once and keeps the history.
func TestBanDoublesExpiresAndLifts(t *testing.T) {
	const banMin, banMax = time.Second, 3 * time.Second
	h, bl := newAbuseHarness(t, limits.GateOptions{OffencesBeforeBan: 5, BanMin: banMin, BanMax: banMax},
		harnessOpts{})
	const src = "127.0.0.2"
	earn := func(count int, want time.Duration) limits.Ban {
		t.Helper()
		for range 5 {
			offend(t, h, src)
		}
		ban := onlyBan(t, h, src)
		if ban.Count != count || ban.Until.Sub(ban.Since) != want {
			t.Fatalf("ban %d lasts %v (count %d), want %v", count, ban.Until.Sub(ban.Since), ban.Count, want)
		}
		expectRefused(t, h, src, limits.ReasonBanned)
		return ban
	}

	first := earn(1, banMin)
	sleepUntil(first.Until)
	served(t, h, src).Close()

	earn(2, 2*banMin)
	if unban(h, "127.0.0.99") {
		t.Errorf("unban of an address never banned lifted something")
	}
	if !unban(h, src) {
		t.Fatalf("unban %s: no ban lifted", src)
	}
	served(t, h, src).Close()
	if unban(h, src) {
		t.Errorf("unban %s twice: lifted a ban again", src)
	}

	earn(3, banMax) // 4 x BanMin, capped
	if !unban(h, "::ffff:"+src) {
		t.Fatalf("unban ::ffff:%s: no ban lifted (the IPv4-mapped spelling)", src)
	}
	served(t, h, src).Close()

	if got := h.counter("kafkaguard_bans_total", nil); got != 3 {
		t.Errorf("bans_total = %v, want 3", got)
	}
	if bans, unbans := bl.counts(); bans != 3 || unbans != 3 {
		t.Errorf("OnBan x%d, OnUnban x%d; want 3 of each", bans, unbans)
	}
}

// MaxConnsPerIP: N connections held open from one address are served, the
// N+1th is refused with per_ip_cap, another address is not affected, and
// closing one lets a new one in.
func TestPerIPCap(t *testing.T) {
	const maxConns = 3
	h, _ := newAbuseHarness(t, limits.GateOptions{OffencesBeforeBan: 5, MaxConnsPerIP: maxConns}, harnessOpts{})
	const src = "127.0.0.5"
	var held []net.Conn
	for range maxConns {
		held = append(held, served(t, h, src))
	}
	expectRefused(t, h, src, limits.ReasonPerIPCap)
	expectRefused(t, h, src, limits.ReasonPerIPCap)
	for range maxConns {
		served(t, h, "127.0.0.6")
	}
	// Each held connection still works.
	for i, c := range held {
		if err := apiVersionsOn(c, int32(10+i)); err != nil {
			t.Fatalf("held connection %d: %v", i, err)
		}
	}

	held[0].Close()
	// The slot is released when the proxy notices the close, a moment later.
	var again net.Conn
	waitFor(t, 10*time.Second, "a new connection after closing one", func() bool {
		c, err := tryServed(h, src)
		again = c
		return err == nil
	})
	defer again.Close()
	expectRefused(t, h, src, limits.ReasonPerIPCap)
	if got := h.counter("kafkaguard_bans_total", nil); got != 0 {
		t.Errorf("bans_total = %v: connections refused by the cap counted as offences", got)
	}
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// RatePerSecond and RateBurst: a burst of B connections is admitted, the
// next refused with reason rate, and the bucket refills with time (a fake
// clock, so the test does not depend on the machine's speed).
func TestRateLimit(t *testing.T) {
	const burst = 3
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	h, _ := newAbuseHarness(t, limits.GateOptions{OffencesBeforeBan: 5, RatePerSecond: 1, RateBurst: burst,
		Now: clock.Now}, harnessOpts{})
	const src = "127.0.0.7"
	burstOf := func(n int) {
		t.Helper()
		for range n {
			// Closed at once: the rate counts new connections, not open ones.
			served(t, h, src).Close()
		}
		expectRefused(t, h, src, limits.ReasonRate)
	}
	burstOf(burst)
	expectRefused(t, h, src, limits.ReasonRate) // a refused connection takes no token, and earns none
	served(t, h, "127.0.0.12").Close()

	clock.Advance(time.Second) // one token
	burstOf(1)
	clock.Advance(time.Second / 2)
	expectRefused(t, h, src, limits.ReasonRate)
	clock.Advance(time.Minute) // the bucket fills up to its burst, no further
	burstOf(burst)
	if got := h.counter("kafkaguard_bans_total", nil); got != 0 {
		t.Errorf("bans_total = %v: connections refused by the rate counted as offences", got)
	}
}

// Allow-listed networks are never banned, capped or rate-limited, however
// often they offend, while a neighbour outside the list is.
func TestAllowListNeverBanned(t *testing.T) {
	h, _ := newAbuseHarness(t, limits.GateOptions{
		OffencesBeforeBan: 2, MaxConnsPerIP: 1, RatePerSecond: 1000, RateBurst: 1000, BanMin: time.Minute,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")},
	}, harnessOpts{})
	for range 10 {
		offend(t, h, "127.0.0.4")
	}
	for range 3 { // over the cap of 1
		served(t, h, "127.0.0.4")
	}

	offend(t, h, "127.0.0.8")
	offend(t, h, "127.0.0.8")
	expectRefused(t, h, "127.0.0.8", limits.ReasonBanned)
	onlyBan(t, h, "127.0.0.8")
	if got := h.counter("kafkaguard_bans_total", nil); got != 1 {
		t.Errorf("bans_total = %v, want 1 (the neighbour outside the allow list)", got)
	}
	if got := bansInForce(t, h); len(got) != 1 || got[0] != "127.0.0.8" {
		t.Errorf("bans in force: %v, want [127.0.0.8]", got)
	}
	served(t, h, "127.0.0.9")
	expectRefused(t, h, "127.0.0.9", limits.ReasonPerIPCap)
}

// oversizedProduce is a Produce v7 with acks=-1 carrying size bytes of
// records, over a 1 MiB limit and under the drain limit.
func oversizedProduce(size int) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = 7
	req.Acks = -1
	req.TimeoutMillis = 1000
	topic := kmsg.NewProduceRequestTopic()
	topic.Topic = "big"
	part := kmsg.NewProduceRequestTopicPartition()
	part.Records = make([]byte, size)
	topic.Partitions = append(topic.Partitions, part)
	req.Topics = append(req.Topics, topic)
	return req
}

// A Produce answered gracefully with MESSAGE_TOO_LARGE weighs
// Weights.RejectedProduce (0.25): a producer that exceeds the limit a few
// times by mistake is not banned; one that does it 20 times in the window is.
func TestAbuseRejectedProduceWeighsLess(t *testing.T) {
	h, _ := newAbuseHarness(t, limits.GateOptions{OffencesBeforeBan: 5, BanMin: time.Minute}, harnessOpts{})
	const src = "127.0.0.9"
	req := oversizedProduce(2 << 20)
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("big-producer"))
	c := served(t, h, src)
	send := func(n int) {
		t.Helper()
		for i := range n {
			corr := int32(100 + i)
			if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
				t.Fatal(err)
			}
			resp := readResponseFrom(t, c, req, corr).(*kmsg.ProduceResponse)
			if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.MessageTooLarge.Code {
				t.Fatalf("oversized Produce answered %d, want MESSAGE_TOO_LARGE", code)
			}
		}
	}
	send(4)
	if got := h.counter("kafkaguard_bans_total", nil); got != 0 {
		t.Fatalf("banned after 4 rejected Produce requests (weight 1 in all)")
	}
	served(t, h, src).Close()
	send(15)
	if got := h.counter("kafkaguard_bans_total", nil); got != 0 {
		t.Fatalf("banned after 19 rejected Produce requests (weight 4.75)")
	}
	send(1)
	if got := h.counter("kafkaguard_bans_total", nil); got != 1 {
		t.Fatalf("bans_total = %v after 20 rejected Produce requests (weight 5), want 1", got)
	}
	// The answer that earned the ban was delivered (send read it); then the
	// connection ends like every connection of a banned source.
	expectClosed(t, c, 5*time.Second)
	ban := onlyBan(t, h, src)
	if ban.Reason != "too_large" || ban.ClientID != "big-producer" {
		t.Errorf("ban = %+v, want reason too_large and client id big-producer", ban)
	}
	expectRefused(t, h, src, limits.ReasonBanned)
	if got := h.counter("kafkaguard_local_responses_total", map[string]string{"api": "Produce", "error": "MESSAGE_TOO_LARGE"}); got != 20 {
		t.Errorf("local MESSAGE_TOO_LARGE responses = %v, want 20", got)
	}
}

// 10 000 distinct offenders, each one connection with a bad size, keep the
// gate's table within MaxTracked, and none of them is refused for want of
// room (idle entries make way).
func TestAbuseManySourcesBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("10 000 connections; skipped with -short")
	}
	const sources, maxTracked, workers = 10_000, 1000, 16
	h, _ := newAbuseHarness(t, limits.GateOptions{OffencesBeforeBan: 5, MaxConnsPerIP: 10, RatePerSecond: 50, RateBurst: 50,
		MaxTracked: maxTracked}, harnessOpts{})
	gate := h.srv.Gate()

	var most atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			most.Store(max(most.Load(), int64(gate.Tracked())))
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	var next atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				i := next.Add(1) - 1
				if i >= sources || failures.Load() > 10 {
					return
				}
				src := fmt.Sprintf("127.10.%d.%d", i/200, i%200+1)
				if err := badSizeFrom(src, h.addrs[0], buf); err != nil {
					failures.Add(1)
					t.Errorf("offender %s: %v", src, err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	most.Store(max(most.Load(), int64(gate.Tracked())))

	if got := most.Load(); got > maxTracked {
		t.Errorf("tracked up to %d sources, bound %d", got, maxTracked)
	}
	if got := gate.Tracked(); got < maxTracked/2 {
		t.Errorf("tracked %d sources after %d offenders: the gate is not tracking them", got, sources)
	}
	if got := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "bad_size"}); got != sources {
		t.Errorf("bad_size rejections = %v, want %d", got, sources)
	}
	if got := h.counter("kafkaguard_connections_refused_total", nil); got != 0 {
		t.Errorf("%v offenders refused at accept; want none (one offence each, room made for each)", got)
	}
	// The bound costs no service: a new clean source is still admitted.
	served(t, h, "127.0.0.13")
	t.Logf("%d offenders, at most %d tracked (bound %d)", sources, most.Load(), maxTracked)
}

// badSizeFrom sends a zero size prefix from src and waits for the close.
func badSizeFrom(src, addr string, buf []byte) error {
	c, err := dialFrom(src, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(be32(0)); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errors.New("not closed after a bad size")
			}
			return nil
		}
	}
}

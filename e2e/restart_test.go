package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// acked collects what a producer saw acknowledged.
type acked struct {
	mu       sync.Mutex
	recs     map[string][]byte
	failed   int
	firstErr error
}

func (a *acked) add(r *kgo.Record, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if a.failed == 0 {
			a.firstErr = err
		}
		a.failed++
		return
	}
	a.recs[string(r.Key)] = r.Value
}

func (a *acked) count() (ok, failed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.recs), a.failed
}

// TestBrokerRestart kills the real broker under a producing client, checks
// what kafkaguard does while the upstream refuses connections, starts the
// broker again, and checks the client recovered and lost nothing it saw
// acknowledged.
func TestBrokerRestart(t *testing.T) {
	requireE2E(t)
	b := newBroker(t)
	g := startGuard(t, []string{b.Addr()})
	topic := "e2e-restart"

	if code := g.readyz(); code != http.StatusOK {
		t.Fatalf("/readyz = %d with the broker up, want 200", code)
	}

	// A producer through kafkaguard: acks=all, retries until its delivery
	// timeout, one record every 5ms, at most maxRecords.
	const maxRecords = 20000
	prod := kgoClient(t, g.addrs, true, kgo.RecordRetries(1000), kgo.RetryBackoffFn(func(int) time.Duration {
		return 250 * time.Millisecond
	}))
	ack := &acked{recs: map[string][]byte{}}
	stop := make(chan struct{})
	produced := make(chan int, 1)
	go func() {
		i := 0
		defer func() { produced <- i }()
		for ; i < maxRecords; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "restart-%06d", i), Value: fmt.Appendf(nil, "value %d", i)}
			prod.Produce(context.Background(), r, ack.add)
		}
	}()
	stopProducing := sync.OnceFunc(func() { close(stop) })
	defer stopProducing()

	waitAcks := func(n int, within time.Duration) bool {
		return eventually(within, 100*time.Millisecond, func() bool { ok, _ := ack.count(); return ok >= n })
	}
	if !waitAcks(200, 90*time.Second) {
		ok, failed := ack.count()
		t.Fatalf("producer through kafkaguard: %d acknowledged, %d failed within 90s; want 200 before the restart", ok, failed)
	}

	// Kill the broker, by its pid, hard.
	pid := b.pid(t)
	if err := signalPid(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill broker %d: %v", pid, err)
	}
	if !eventually(30*time.Second, 100*time.Millisecond, func() bool { return !pidAlive(pid) }) {
		t.Fatalf("broker %d still alive 30s after SIGKILL", pid)
	}
	ackedAtKill, _ := ack.count()
	t.Logf("broker pid %d killed after %d records acknowledged", pid, ackedAtKill)

	// Upstream refusing connections: a new client gets a prompt close, and
	// kafkaguard reports itself unready.
	c, err := net.DialTimeout("tcp", g.addrs[0], 5*time.Second)
	if err != nil {
		t.Errorf("dial kafkaguard with the broker down: %v (want accept, then close)", err)
	} else {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(metadataV0())
		start := time.Now()
		if err := awaitClose(c, 15*time.Second); err != nil {
			t.Errorf("client connection with the upstream refusing: %v after 15s; want a prompt close", err)
		} else {
			t.Logf("client connection closed %v after its request, upstream refusing", time.Since(start).Round(time.Millisecond))
		}
		c.Close()
	}
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool { return g.readyz() == http.StatusServiceUnavailable }) {
		t.Errorf("/readyz = %d with the broker down, want 503", g.readyz())
	}
	if n := metricSum(t, g.admin, "kafkaguard_upstream_dial_errors_total", nil); n < 1 {
		t.Errorf("kafkaguard_upstream_dial_errors_total = %v with the broker down, want >= 1", n)
	}

	// Start it again on the same data; ZooKeeper kept running.
	b.start(t)
	if !eventually(60*time.Second, 250*time.Millisecond, func() bool { return g.readyz() == http.StatusOK }) {
		t.Errorf("/readyz = %d 60s after the broker came back, want 200", g.readyz())
	}
	// The client recovers through kafkaguard: new acknowledgements arrive.
	if !waitAcks(ackedAtKill+300, 120*time.Second) {
		ok, failed := ack.count()
		t.Fatalf("producer did not recover through kafkaguard: %d acknowledged (%d at the kill), %d failed", ok, ackedAtKill, failed)
	}
	stopProducing()
	n := <-produced
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := prod.Flush(ctx); err != nil {
		t.Errorf("flush: %v", err)
	}
	prod.Close()
	ok, failed := ack.count()

	// Every record the client saw acknowledged is there afterwards.
	got := consumeAll(t, g.addrs, true, topic, ok)
	seen := make(map[string][]byte, len(got))
	for _, r := range got {
		seen[string(r.Key)] = r.Value
	}
	ack.mu.Lock()
	lost := 0
	for k, v := range ack.recs {
		if w, found := seen[k]; !found || string(w) != string(v) {
			lost++
			if lost <= 5 {
				t.Errorf("record %q acknowledged but not consumed (or changed)", k)
			}
		}
	}
	ack.mu.Unlock()
	t.Logf("FIGURES restart: %d produced, %d acknowledged (%d before the kill), %d failed, %d consumed (%d duplicates from retries), %d lost",
		n, ok, ackedAtKill, failed, len(got), len(got)-len(seen), lost)
	if failed > 0 {
		t.Logf("first produce error: %v", ack.firstErr)
	}
	if lost > 0 {
		t.Errorf("%d acknowledged records lost across the broker restart", lost)
	}
}

package app

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/config"
)

// lockedBuffer is a log sink safe for the app's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), sub)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startApp builds and starts an App from cfg with a silent logger, failing the test if either step
// fails; the caller stops it, where its other cleanups need it stopped.
func startApp(t testing.TB, cfg config.Config) *App {
	t.Helper()
	a, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	return a
}

func testConfig(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.Listeners = []config.Listener{{Address: "127.0.0.1:0", Upstream: freeAddr(t)}}
	cfg.Admin.Address = ""
	cfg.Abuse.OffencesBeforeBan = 1
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Bans from many sources at once, as in an attack from a whole network, do not flood the log: the ban
// and unban lines are rate-limited, while kafkaguard_bans_total counts every ban.
func TestBanLogRateLimited(t *testing.T) {
	const sources = 500
	var logs lockedBuffer
	a, err := Build(testConfig(t), zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	g := a.gate
	for i := range sources {
		addr := netip.AddrFrom4([4]byte{192, 0, byte(2 + i>>8), byte(i)})
		if _, banned := g.Offence(addr, "", "too_large", 1); !banned {
			t.Fatalf("source %d not banned", i)
		}
		g.Unban(addr)
	}
	// At most one burst a second; the loop takes well under two.
	if n := logs.count(`"source banned"`); n < 1 || n > 2*banLogBurst {
		t.Errorf("%d ban lines for %d bans, want 1..%d", n, sources, 2*banLogBurst)
	}
	if n := logs.count(`"source unbanned"`); n > 2*banLogBurst {
		t.Errorf("%d unban lines for %d unbans, want at most %d", n, sources, 2*banLogBurst)
	}
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	evicted := 0
	for _, mf := range mfs {
		if mf.GetName() == "kafkaguard_abuse_sources_evicted_total" {
			evicted = len(mf.GetMetric())
		}
	}
	if evicted != 2 {
		t.Errorf("kafkaguard_abuse_sources_evicted_total has %d series, want 2 (connected, banned)", evicted)
	}
	for _, mf := range mfs {
		if mf.GetName() == "kafkaguard_bans_total" {
			if got := mf.GetMetric()[0].GetCounter().GetValue(); got != sources {
				t.Errorf("kafkaguard_bans_total = %v, want %d", got, sources)
			}
			return
		}
	}
	t.Error("no kafkaguard_bans_total")
}

// admin.metrics_address serves /metrics, /healthz and /readyz and nothing that changes state; /bans stays
// on admin.address.
func TestMetricsAddressIsReadOnly(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Address = freeAddr(t)
	cfg.Admin.MetricsAddress = freeAddr(t)
	a := startApp(t, cfg)
	defer a.Stop()
	client := &http.Client{Timeout: 5 * time.Second}
	do := func(method, url string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	mets, admin := "http://"+cfg.Admin.MetricsAddress, "http://"+cfg.Admin.Address
	for _, tt := range []struct {
		method, url string
		want        int
	}{
		{"GET", mets + "/metrics", 200},
		{"GET", mets + "/healthz", 200},
		{"GET", mets + "/readyz", 503}, // the upstream is a closed port
		{"GET", mets + "/bans", 404},
		{"DELETE", mets + "/bans/192.0.2.7", 404},
		{"GET", mets + "/debug/pprof/", 404},
		{"POST", mets + "/debug/free-os-memory", 404},
		{"GET", admin + "/bans", 200},
		{"DELETE", admin + "/bans/192.0.2.7", 404}, // served: no such ban
		{"GET", admin + "/debug/pprof/", 200},
		{"POST", admin + "/debug/free-os-memory", 200},
		{"GET", admin + "/debug/free-os-memory", 405},
	} {
		if got := do(tt.method, tt.url); got != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.url, got, tt.want)
		}
	}
}

// A drain that runs out of timeouts.shutdown closes the connections of both
// HTTP servers, not just the admin one: Shutdown with an expired context
// leaves a connection mid-request open.
func TestStopClosesHTTPConnectionsAfterTimedOutDrain(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Address = freeAddr(t)
	cfg.Admin.MetricsAddress = freeAddr(t)
	cfg.Timeouts.Shutdown = 300 * time.Millisecond
	a := startApp(t, cfg)
	dial := func(addr string, send []byte) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// A request frame never finished keeps the drain busy until its deadline.
	dial(a.Server().Addrs()[0].String(), []byte{0, 0, 0, 100, 0, 3})
	partial := []byte("GET /metrics HTTP/1.1\r\nHost: x\r\n") // no end of headers: the request stays active
	conns := map[string]net.Conn{
		"admin.address":         dial(cfg.Admin.Address, partial),
		"admin.metrics_address": dial(cfg.Admin.MetricsAddress, partial),
	}
	time.Sleep(100 * time.Millisecond) // both servers read the partial request
	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop() }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return")
	}
	for name, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: connection still open after Stop", name)
			}
		}
	}
}

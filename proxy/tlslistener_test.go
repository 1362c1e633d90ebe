package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"
	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// tlsHarness is a harness whose listeners serve TLS from certs, its log
// (info and up) captured in logs.
type tlsHarness struct {
	*harness
	certs *tlstest.Certs
	logs  *lockedBuffer
}

// newTLSHarness builds a harness whose routes serve certs' server
// certificate with client auth auth; upstreamTLS makes kfake speak TLS too
// and kafkaguard dial it with certs' CA.
func newTLSHarness(t *testing.T, auth tls.ClientAuthType, upstreamTLS bool, ho harnessOpts) *tlsHarness {
	t.Helper()
	certs := tlstest.New(t)
	logs := &lockedBuffer{}
	if upstreamTLS {
		ho.kfakeOpts = append(ho.kfakeOpts, kfake.TLS(certs.ServerConfig()))
	}
	prev := ho.mutate
	ho.mutate = func(o *Options) {
		o.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
		o.TLSHandshakeTimeout = 2 * time.Second
		for i := range o.Routes {
			f := ServerTLSFiles{CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key, ClientAuth: auth}
			if auth != tls.NoClientCert {
				f.ClientCAFile = certs.CAFile
			}
			src, err := NewServerTLS(f, TLSFileOptions{Listener: "test", CheckEvery: 10 * time.Millisecond, Logger: o.Logger})
			if err != nil {
				t.Fatal(err)
			}
			o.Routes[i].TLS = src
			if upstreamTLS {
				up, err := NewUpstreamTLS(UpstreamTLSFiles{CAFile: certs.CAFile, ServerName: "127.0.0.1"}, TLSFileOptions{Listener: "test"})
				if err != nil {
					t.Fatal(err)
				}
				o.Routes[i].UpstreamTLS = up
			}
		}
		if prev != nil {
			prev(o)
		}
	}
	return &tlsHarness{harness: newHarness(t, ho), certs: certs, logs: logs}
}

// tlsClient is a franz-go client to the harness over TLS, with the
// client certificate when mtls.
func (h *tlsHarness) tlsClient(mtls bool, opts ...kgo.Opt) *kgo.Client {
	cfg := h.certs.ClientConfig()
	if mtls {
		cfg.Certificates = []tls.Certificate{h.certs.Client.TLS}
	}
	return h.client(append([]kgo.Opt{kgo.DialTLSConfig(cfg)}, opts...)...)
}

// tlsProduceConsume produces n records to topic through cl and reads them back.
func tlsProduceConsume(t *testing.T, cl *kgo.Client, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range n {
		r := &kgo.Record{Topic: topic, Value: []byte(strings.Repeat("v", 100+i*500))}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	cl.AddConsumeTopics(topic)
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", got, n, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Errorf("fetch: %v", err) })
		got += fs.NumRecords()
	}
}

// franz-go produces and consumes through a TLS listener, with and without a
// client certificate, to plaintext and to TLS brokers; the verified
// subject is in the connection's log lines.
func TestTLSListenerCarriesKafka(t *testing.T) {
	for _, tc := range []struct {
		name     string
		auth     tls.ClientAuthType
		mtls     bool
		upstream bool
	}{
		{"tls", tls.NoClientCert, false, false},
		{"mtls", tls.RequireAndVerifyClientCert, true, false},
		{"mtls to a tls broker", tls.RequireAndVerifyClientCert, true, true},
		{"tls to a tls broker", tls.VerifyClientCertIfGiven, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTLSHarness(t, tc.auth, tc.upstream, harnessOpts{})
			cl := h.tlsClient(tc.mtls, kgo.FetchMaxWait(200*time.Millisecond))
			// Records up to ~50 KiB: responses larger than a chunk go
			// through relayLarge's chunk path, never a splice.
			tlsProduceConsume(t, cl, "tls-"+strings.ReplaceAll(tc.name, " ", "-"), 100)
			cl.Close()
			waitFor(t, 5*time.Second, "connections closed", func() bool { return h.srv.connCount() == 0 })
			logs := h.logs.String()
			hasSubject := strings.Contains(logs, `"tls_subject":"CN=client,O=kafkaguard-test"`)
			if hasSubject != tc.mtls {
				t.Errorf("tls_subject in logs = %v, want %v:\n%s", hasSubject, tc.mtls, logs)
			}
			if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
				t.Errorf("%v refusals, want none:\n%s", n, logs)
			}
		})
	}
}

// Every way a TLS handshake goes wrong gets a reason in the metric, a log
// line naming it, and (but for a client closing or resetting without a
// byte, or hanging up mid-handshake) an offence; every end is counted in
// connections_closed_total by its reason.
func TestTLSHandshakeRefusals(t *testing.T) {
	kafkaReq := rawRequest(int16(kmsg.ApiVersions), 3, 1, "plain", []byte{0, 0, 0})
	for _, tc := range []struct {
		name    string
		client  func(t *testing.T, h *tlsHarness, addr string)
		reason  string
		logHas  string
		offence bool
		closed  string // connections_closed_total's reason; "" = reason
	}{
		{"plaintext kafka", func(t *testing.T, h *tlsHarness, addr string) {
			c := dial(t, addr)
			c.Write(kafkaReq)
			expectClosed(t, c, 5*time.Second)
		}, "plaintext_on_tls", "security.protocol=PLAINTEXT", true, ""},
		{"unknown ca client certificate", func(t *testing.T, h *tlsHarness, addr string) {
			cfg := h.certs.ClientConfig()
			// Sent whatever CAs kafkaguard names: crypto/tls would
			// otherwise keep a certificate the server cannot accept.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &h.certs.Unknown.TLS, nil
			}
			tlsDialFails(t, addr, cfg)
		}, "tls_handshake_failed", "certificate signed by unknown authority", true, ""},
		{"expired client certificate", func(t *testing.T, h *tlsHarness, addr string) {
			cfg := h.certs.ClientConfig()
			cfg.Certificates = []tls.Certificate{h.certs.Expired.TLS}
			tlsDialFails(t, addr, cfg)
		}, "tls_handshake_failed", "expired", true, ""},
		{"no client certificate", func(t *testing.T, h *tlsHarness, addr string) {
			tlsDialFails(t, addr, h.certs.ClientConfig())
		}, "tls_handshake_failed", "didn't provide a certificate", true, ""},
		{"handshake never finishes", func(t *testing.T, h *tlsHarness, addr string) {
			c := dial(t, addr)
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header and one byte of a ClientHello
			expectClosed(t, c, 5*time.Second)
		}, "tls_handshake_timeout", "tls handshake timed out", true, ""},
		{"http", func(t *testing.T, h *tlsHarness, addr string) {
			c := dial(t, addr)
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			expectClosed(t, c, 5*time.Second)
		}, "not_kafka", "look like an HTTP request", true, ""},
		{"does not trust kafkaguard's certificate", func(t *testing.T, h *tlsHarness, addr string) {
			cfg := h.certs.ClientConfig()
			cfg.RootCAs = x509.NewCertPool() // trusts nothing: it sends an alert
			tlsDialFails(t, addr, cfg)
		}, "tls_handshake_failed", "remote error: tls:", true, ""},
		{"closes without a byte", func(t *testing.T, h *tlsHarness, addr string) {
			dial(t, addr).Close()
		}, "", "", false, "client_closed"},
		{"resets without a byte", func(t *testing.T, h *tlsHarness, addr string) {
			c := dial(t, addr)
			c.(*net.TCPConn).SetLinger(0) // a health check that closes with a RST
			c.Close()
		}, "", "", false, "client_closed"},
		{"hangs up mid-handshake", func(t *testing.T, h *tlsHarness, addr string) {
			// A client closed while it still dialled a broker.
			c := dial(t, addr)
			c.Write(clientHello(t))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var b [1]byte
			if n, err := c.Read(b[:]); n != 1 {
				t.Fatalf("no ServerHello from kafkaguard: %v", err)
			}
			c.Close()
		}, "", "", false, "tls_handshake_abandoned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTLSHarness(t, tls.RequireAndVerifyClientCert, false, harnessOpts{brokers: 1,
				gate: &limits.GateOptions{OffencesBeforeBan: 1, BanMin: time.Minute, BanMax: time.Minute}})
			tc.client(t, h, h.addrs[0])
			// Waits for the close to be counted, not for the set to be
			// empty: a client that hangs up at once may not be accepted yet.
			waitFor(t, 5*time.Second, "connection closed", func() bool {
				return h.counter("kafkaguard_connections_closed_total", nil) >= 1 && h.srv.connCount() == 0
			})
			if tc.reason != "" {
				if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": tc.reason, "api": apiNone}); n != 1 {
					t.Errorf("rejected{reason=%s} = %v, want 1", tc.reason, n)
				}
			} else if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
				t.Errorf("rejected = %v, want 0", n)
			}
			logs := h.logs.String()
			if tc.reason != "" && (!strings.Contains(logs, `"reason":"`+tc.reason+`"`) || !strings.Contains(logs, tc.logHas)) {
				t.Errorf("log lacks reason %s and %q:\n%s", tc.reason, tc.logHas, logs)
			}
			if tc.reason == "" && strings.Contains(logs, "refused") {
				t.Errorf("a closed probe was logged as a refusal:\n%s", logs)
			}
			// One offence bans (OffencesBeforeBan 1).
			if got := h.srv.Gate().ActiveBans() == 1; got != tc.offence {
				t.Errorf("offence recorded = %v, want %v", got, tc.offence)
			}
			closed := cmp.Or(tc.closed, tc.reason)
			if n := h.counter("kafkaguard_connections_closed_total", map[string]string{"reason": closed}); n != 1 {
				t.Errorf("connections_closed_total{reason=%s} = %v, want 1", closed, n)
			}
		})
	}
}

// A client mid-handshake on a listener a reload removes is cut by the
// drain, not charged: its handshake ends as a shutdown, no refusal, no
// offence (it used to be a tls_handshake_timeout offence, the drain's
// interrupt read as the client's slowness).
func TestTLSHandshakeCutByListenerRemoval(t *testing.T) {
	h := newTLSHarness(t, tls.RequireAndVerifyClientCert, false, harnessOpts{brokers: 2,
		gate: &limits.GateOptions{OffencesBeforeBan: 1, BanMin: time.Minute, BanMax: time.Minute}})
	c := dial(t, h.addrs[0])
	c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a record header and one byte of a ClientHello
	waitFor(t, 5*time.Second, "the handshake under way", func() bool { return h.srv.connCount() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.srv.RemoveRoute(ctx, Route{Listen: h.addrs[0]}); err != nil {
		t.Fatalf("RemoveRoute: %v", err)
	}
	if el := time.Since(start); el >= time.Second {
		t.Errorf("the drain took %v: it waited for the handshake timeout instead of cutting it", el)
	}
	expectClosed(t, c, 5*time.Second)
	if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
		t.Errorf("rejected = %v, want 0:\n%s", n, h.logs.String())
	}
	if n := h.srv.Gate().ActiveBans(); n != 0 {
		t.Errorf("%d bans: the drain was charged to the client", n)
	}
	if n := h.counter("kafkaguard_connections_closed_total", map[string]string{"reason": "shutdown"}); n != 1 {
		t.Errorf("connections_closed_total{reason=shutdown} = %v, want 1", n)
	}
}

// A drain whose interrupt (a read deadline of now) landed just before the
// handshake set its own deadline must still cut the handshake: runHandshake
// looks at the drain after setting the deadline, so the client's silence
// is not waited out. Here the interrupt comes first, as in that race, and
// the client never sends a byte.
func TestHandshakeSeesDrainAfterItsDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := dial(t, ln.Addr().String())
	defer c.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now()) // the drain's interrupt
	fb := &firstBytesConn{Conn: raw}
	tc := tls.Server(fb, tlstest.New(t).ServerConfig())
	start := time.Now()
	r, err := runHandshake(tc, fb, raw, 10*time.Second, func() bool { return true })
	if el := time.Since(start); el >= time.Second {
		t.Errorf("the handshake took %v: it waited for the client instead of seeing the drain", el)
	}
	if r != reasonShutdown || !errors.Is(err, errCutByDrain) {
		t.Errorf("runHandshake = %v, %v; want shutdown, %v", r, err, errCutByDrain)
	}
}

// The gate judges a connection before its handshake: once a source is
// banned for bad handshakes, its next connection is reset at accept without
// a byte of TLS from kafkaguard.
func TestTLSGateBeforeHandshake(t *testing.T) {
	h := newTLSHarness(t, tls.RequireAndVerifyClientCert, false, harnessOpts{brokers: 1,
		gate: &limits.GateOptions{OffencesBeforeBan: 2, BanMin: time.Minute, BanMax: time.Minute}})
	for range 2 {
		tlsDialFails(t, h.addrs[0], h.certs.ClientConfig())
	}
	waitFor(t, 5*time.Second, "the ban", func() bool { return h.srv.Gate().ActiveBans() == 1 })
	// The refusal is a reset at accept: the dial itself may see it.
	if c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second); err == nil {
		defer c.Close()
		c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0}) // start of a ClientHello
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [64]byte
		n, err := c.Read(b[:])
		var ne net.Error
		if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("banned source read %d bytes, %v: want a close before any TLS", n, err)
		}
	}
	waitFor(t, 5*time.Second, "the refusal counted", func() bool {
		return h.counter("kafkaguard_connections_refused_total", map[string]string{"reason": "banned"}) == 1
	})
	if got := h.counter("kafkaguard_frames_rejected_total", nil); got != 2 {
		t.Errorf("handshake refusals = %v, want the 2 before the ban", got)
	}
}

// tlsDialFails runs a client handshake that kafkaguard must refuse, then
// waits for the close. With TLS 1.3 a client learns its certificate was
// refused only on its first read.
func tlsDialFails(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	c := dial(t, addr)
	cfg = cfg.Clone()
	cfg.ServerName = "127.0.0.1"
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		return
	}
	var b [1]byte
	if _, err := tc.Read(b[:]); err == nil {
		t.Fatal("handshake accepted")
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Handshake memory is bounded by the handshake timeout and the number of
// connections: many clients that send most of a large ClientHello record
// and stall each cost a goroutine and tls.Conn's record buffer for at most
// timeouts.tls_handshake, then are closed as tls_handshake_timeout and
// their memory is returned.
func TestTLSStalledHandshakesMemory(t *testing.T) {
	const conns = 200
	h := newTLSHarness(t, tls.NoClientCert, false, harnessOpts{brokers: 1})
	before := heapInUse()
	var wg sync.WaitGroup
	opened := make([]net.Conn, conns)
	for i := range conns {
		c := dial(t, h.addrs[0])
		opened[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A handshake record declaring 16 KiB, of which 16000 bytes
			// come: tls.Conn grows its input buffer to take it.
			hdr := []byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc}
			c.Write(append(hdr, make([]byte, 16000-4)...))
		}()
	}
	wg.Wait()
	// Accepted, counted by connections_total: the count of open ones may
	// never reach conns if accepting them all outlasts the first ones'
	// handshake timeout.
	waitFor(t, 5*time.Second, "all connections accepted", func() bool {
		return h.counter("kafkaguard_connections_total", nil) >= conns
	})
	time.Sleep(200 * time.Millisecond) // let every handshake goroutine read its record
	during := heapInUse()
	perConn := (int64(during) - int64(before)) / conns
	t.Logf("heap in use: before %d KiB, %d stalled handshakes %d KiB (%d bytes each)", before>>10, conns, during>>10, perConn)
	if perConn > 64<<10 {
		t.Errorf("a stalled handshake holds %d bytes of heap, want <= 64 KiB", perConn)
	}
	waitFor(t, 10*time.Second, "handshake timeouts", func() bool { return h.srv.connCount() == 0 })
	if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "tls_handshake_timeout"}); n != conns {
		t.Errorf("tls_handshake_timeout = %v, want %d", n, conns)
	}
	for _, c := range opened {
		c.Close()
	}
	after := heapInUse()
	t.Logf("heap in use after the timeouts: %d KiB", after>>10)
	if after > before+(4<<20) {
		t.Errorf("heap after the timeouts %d KiB, before %d KiB: handshake memory not returned", after>>10, before>>10)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// A client connected over TLS keeps its connection, and keeps producing,
// while the listener's certificate files are replaced; a new connection
// gets the new certificate.
func TestTLSRotationKeepsConnections(t *testing.T) {
	h := newTLSHarness(t, tls.NoClientCert, false, harnessOpts{brokers: 1})
	cl := h.tlsClient(false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	produce := func() {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "rotate", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	produce()
	opened := h.counter("kafkaguard_connections_total", nil)

	fresh := h.certs.CA.Issue(t, tlstest.Server("rotated"))
	tlstest.WriteFile(t, h.certs.ServerFiles.Key, fresh.KeyPEM)
	tlstest.WriteFile(t, h.certs.ServerFiles.Cert, fresh.CertPEM)
	probes := 0
	waitFor(t, 5*time.Second, "the new certificate served", func() bool {
		probes++
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", h.addrs[0], h.certs.ClientConfig())
		if err != nil {
			return false
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName == "rotated"
	})
	produce()
	// The client's connections survived: the probes are the only new ones.
	if got := h.counter("kafkaguard_connections_total", nil) - opened; got != float64(probes) {
		t.Errorf("%v connections opened across the rotation, want the %d probes only", got, probes)
	}
	if strings.Contains(h.logs.String(), `"reason":"`) && strings.Contains(h.logs.String(), "refused") {
		t.Errorf("refusals during rotation:\n%s", h.logs.String())
	}
}

// A TLS conn is never spliced; a plaintext pair is.
func TestSpliceable(t *testing.T) {
	certs := tlstest.New(t)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c1 := dial(t, ln.Addr().String())
	c2 := dial(t, ln.Addr().String())
	tlsc, _ := newClientTLS(c1, certs.ServerConfig())
	for _, tc := range []struct {
		name             string
		client, upstream net.Conn
		want             bool
	}{
		{"tcp both", c1, c2, true},
		{"tls client", tlsc, c2, false},
		{"tls upstream", c1, &tlsSocket{Conn: tls.Client(c2, certs.ClientConfig()), raw: c2}, false},
		{"pipe", a, c2, false},
		{"no upstream", c1, nil, false},
	} {
		c := &conn{client: tc.client, upstream: tc.upstream}
		if got := c.spliceable(); got != tc.want {
			t.Errorf("%s: spliceable = %v, want %v", tc.name, got, tc.want)
		}
	}
	if socketOf(tlsc) != c1 {
		t.Error("socketOf does not unwrap a tlsSocket")
	}
}

// A broker whose certificate kafkaguard cannot verify fails the dial, not
// the client: an upstream dial error with the cause in the log, no
// offence, and the client's connection reset so it retries.
func TestTLSUpstreamUntrustedBroker(t *testing.T) {
	certs := tlstest.New(t)
	bad := &tls.Config{Certificates: []tls.Certificate{certs.Unknown.TLS}}
	logs := &lockedBuffer{}
	h := newHarness(t, harnessOpts{brokers: 1, kfakeOpts: []kfake.Opt{kfake.TLS(bad)},
		gate: &limits.GateOptions{OffencesBeforeBan: 1, BanMin: time.Minute, BanMax: time.Minute},
		mutate: func(o *Options) {
			o.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
			o.TLSHandshakeTimeout = 2 * time.Second
			up, err := NewUpstreamTLS(UpstreamTLSFiles{CAFile: certs.CAFile, ServerName: "127.0.0.1"}, TLSFileOptions{Listener: "test"})
			if err != nil {
				t.Fatal(err)
			}
			o.Routes[0].UpstreamTLS = up
		}})
	c := dial(t, h.addrs[0])
	c.Write(rawRequest(int16(kmsg.ApiVersions), 3, 1, "client", []byte{0, 0, 0}))
	expectClosed(t, c, 5*time.Second)
	waitFor(t, 5*time.Second, "the dial error counted", func() bool {
		return h.counter("kafkaguard_upstream_dial_errors_total", nil) == 1
	})
	if !strings.Contains(logs.String(), "tls handshake with broker") || !strings.Contains(logs.String(), "unknown authority") {
		t.Errorf("log does not say the broker's certificate failed:\n%s", logs.String())
	}
	if n := h.srv.Gate().ActiveBans(); n != 0 {
		t.Errorf("%d bans: a broker's bad certificate was charged to the client", n)
	}
}

// Shutdown does not wait out a handshake, and a handshake it cuts is no
// offence of the client.
func TestTLSShutdownCutsHandshakeWithoutOffence(t *testing.T) {
	h := newTLSHarness(t, tls.NoClientCert, false, harnessOpts{brokers: 1,
		gate:   &limits.GateOptions{OffencesBeforeBan: 1, BanMin: time.Minute, BanMax: time.Minute},
		mutate: func(o *Options) { o.TLSHandshakeTimeout = time.Minute }})
	c := dial(t, h.addrs[0])
	c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a ClientHello that never finishes
	waitFor(t, 5*time.Second, "the connection accepted", func() bool { return h.srv.connCount() == 1 })
	time.Sleep(50 * time.Millisecond) // let the handshake start reading
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v after %v", err, time.Since(start))
	}
	if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
		t.Errorf("%v refusals counted for a handshake cut by shutdown:\n%s", n, h.logs.String())
	}
	if n := h.srv.Gate().ActiveBans(); n != 0 {
		t.Errorf("%d bans for a handshake cut by shutdown", n)
	}
}
